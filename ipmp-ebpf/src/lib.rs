//! Empty library target: it exists so that ipmp-user's build-dependency on this crate is
//! tracked by cargo; the programs are in the `ipmp` binary.
#![no_std]
