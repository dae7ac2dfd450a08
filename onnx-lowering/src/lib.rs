//! `opml-lowering`: not implemented yet.
//!
//! This crate is a placeholder in the workspace layout of `DESIGN.md`; its
//! work is issue 3. It exports nothing, so nothing can mistake it for
//! a working component.
