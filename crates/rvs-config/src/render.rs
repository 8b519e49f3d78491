//! ipvsadm listings (filled in by the renderer work).
