//! Fixtures built in code and readers for checking outputs: the workspace's testkit.
#![allow(unused_imports)]

pub use imgsvc_testkit::forge::*;
pub use imgsvc_testkit::inspect::*;
pub use imgsvc_testkit::photos::*;
