//! `netconn top`: the live view in the terminal.

use super::CmdError;
use crate::cli::TopArgs;

pub fn run(args: TopArgs) -> Result<(), CmdError> {
    let netns = super::own_netns()?;
    crate::top::run(netns, args.all_namespaces).map_err(CmdError::Usage)
}
