//! Network namespaces other than netconn's own: choosing one on the
//! command line (`--netns`), finding every one on the host, and naming
//! what each belongs to (a container, a pod, a named namespace).

pub mod discover;
pub mod inside;
pub mod owner;
pub mod target;
