//! Connection table, TCP/UDP/SCTP state machines and the expiry timer wheel
//! (`ip_vs_conn.c`, `ip_vs_proto_*.c`). (Placeholder until implemented.)
