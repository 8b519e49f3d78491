//! Tests of the keepalived.conf reader.
