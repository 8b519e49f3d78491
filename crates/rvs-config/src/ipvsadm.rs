//! The ipvsadm 1.31 command line (filled in by the parser work).
