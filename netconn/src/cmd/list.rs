//! `netconn list`: the namespace's sockets (or every namespace's), one row
//! each or grouped.

use super::CmdError;
use crate::cli::ListArgs;
use crate::list::{self, Namespaced};
use crate::namespaces::{discover, target};
use crate::output::sink::Sink;
use crate::tables::procs::Processes;

pub fn run(args: ListArgs) -> Result<(), CmdError> {
    let mut sink = Sink::create(args.output.as_deref()).map_err(CmdError::Usage)?;
    let procs = Processes::new(args.processes);
    let lists = if args.all_namespaces {
        every_namespace(&procs)?
    } else {
        let netns = super::own_netns()?;
        let rows = list::rows(&procs, netns).map_err(CmdError::Dump)?;
        vec![Namespaced {
            netns,
            owner: None,
            rows,
        }]
    };
    let groups = || {
        lists
            .iter()
            .map(|l| {
                (
                    args.all_namespaces.then_some(l.netns),
                    list::aggregate(&l.rows),
                )
            })
            .collect::<Vec<_>>()
    };
    let text = match (args.aggregate, args.json) {
        (false, false) => list::rows_table(&lists).into_bytes(),
        (false, true) => {
            let mut out =
                Vec::with_capacity(lists.iter().map(|l| l.rows.len()).sum::<usize>() * 300);
            list::write_json(&lists, &mut out);
            out.push(b'\n');
            out
        }
        (true, false) => list::aggregate_table(&groups()).into_bytes(),
        (true, true) => {
            let mut out = list::aggregate_json(&groups());
            out.push(b'\n');
            out
        }
    };
    super::written(sink.write_bytes(&text))
}

/// Every namespace's sockets, each dumped from a thread inside it. A
/// namespace that went away since the scan is left out.
fn every_namespace(procs: &Processes) -> Result<Vec<Namespaced>, CmdError> {
    let mut lists = Vec::new();
    for ns in discover::scan().into_values() {
        let Some(file) = ns.open() else {
            continue;
        };
        let rows = target::run_in(&file, || list::rows(procs, ns.inode))
            .map_err(|e| CmdError::system("cannot enter a network namespace")(e.into()))?
            .map_err(CmdError::Dump)?;
        lists.push(Namespaced {
            netns: ns.inode,
            owner: Some(ns.owner()),
            rows,
        });
    }
    Ok(lists)
}
