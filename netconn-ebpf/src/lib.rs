#![no_std]
// The programs live in the `netconn` binary target (src/main.rs); this empty
// library lets `netconn` name this crate as a build dependency.
