//! Bounds-checked packet access shared by the programs.
