//! What a watch answers between intervals: the counts record a client of
//! the counts socket asks for, and a scraper's page (made by
//! [`crate::prometheus`]), for one namespace or for every one.

use std::collections::HashMap;

use crate::cmd::CmdError;
use crate::live::node::{Node, Scope};
use crate::live::serve as served;
use crate::namespaces::owner::Owner;
use crate::output::record::Source;
use crate::prometheus::exporter::{Exporter, Health, info};
use crate::prometheus::node_page;
use crate::prometheus::page::Page;

use super::interval::Kept;
use super::reading::{Counting, Losses, NamespaceReading, counts_record};

/// A scrape's page, counts read now: every namespace's mini-sockets read
/// again where the kernel shows they may have changed, or polled.
pub(super) fn page(
    counting: &mut Counting,
    groups: &crate::live::ports::Groups,
    kept: &HashMap<u32, Kept>,
    output_dropped: u64,
) -> Result<Page, CmdError> {
    match counting {
        Counting::Ebpf(node) => {
            let inodes: Vec<u32> = node.spaces().keys().copied().collect();
            for inode in inodes {
                node.refresh_mini_sockets(inode)?;
            }
            node.drain_stream();
            page_now(node, kept, output_dropped)
        }
        Counting::Poll(_) => {
            let (readings, _) = super::reading::read(counting, groups, false, true, None)?;
            Ok(polled_page(
                counting.scope(),
                &readings,
                kept,
                output_dropped,
            ))
        }
    }
}

/// A polled watch's page, from its readings.
pub(super) fn polled_page(
    scope: Scope,
    readings: &[NamespaceReading],
    kept: &HashMap<u32, Kept>,
    output_dropped: u64,
) -> Page {
    let exporter = |netns| kept.get(&netns).map(|k| &k.exporter);
    let health = Health {
        output_dropped,
        ..Health::default()
    };
    if let Scope::One(_) = scope {
        let Some(r) = readings.first() else {
            return Page(vec![info(Source::Poll)]);
        };
        let none = Exporter::new();
        let exporter = exporter(r.netns).unwrap_or(&none);
        return exporter.page(Source::Poll, &r.counts, r.ports.as_deref(), health);
    }
    let unowned = Owner::default();
    let namespaces = readings.iter().map(|r| node_page::Namespace {
        netns: r.netns,
        owner: r.owner.as_ref().unwrap_or(&unowned),
        counts: r.counts,
        ports: r.ports.clone(),
        exporter: exporter(r.netns),
    });
    node_page::page(Source::Poll, namespaces, None, health)
}

/// The page from every namespace's state as it is: for scrapes answered
/// while the interval's work runs (between two namespaces).
pub(super) fn page_now(
    node: &Node,
    kept: &HashMap<u32, Kept>,
    output_dropped: u64,
) -> Result<Page, CmdError> {
    let exporter = |netns| kept.get(&netns).map(|k| &k.exporter);
    if let Scope::One(inode) = node.scope() {
        let health = Health {
            lost_events: node.lost_events()?,
            resyncs: Some(node.spaces()[&inode].state.resyncs),
            conn_records_lost: node.conn_records_lost()?,
            output_dropped,
        };
        let counts = node.counts(inode)?;
        let ports = node.port_series_now(inode);
        let none = Exporter::new();
        let exporter = exporter(inode).unwrap_or(&none);
        return Ok(exporter.page(Source::Ebpf, &counts, ports.as_deref(), health));
    }
    let mut namespaces = Vec::with_capacity(node.spaces().len());
    for (inode, space) in node.spaces() {
        namespaces.push(node_page::Namespace {
            netns: *inode,
            owner: &space.owner,
            counts: node.counts(*inode)?,
            ports: node.port_series_now(*inode),
            exporter: exporter(*inode),
        });
    }
    let health = Health {
        lost_events: node.lost_events()?,
        resyncs: Some(node.resyncs()),
        conn_records_lost: node.conn_records_lost()?,
        output_dropped,
    };
    let untracked = Some(node.untracked().len());
    Ok(node_page::page(Source::Ebpf, namespaces, untracked, health))
}

/// The namespace a request asks the counts of (`counts INODE`; plain
/// `counts`: the daemon's own); None for what the board answers.
fn asked_namespace(request: &served::Request) -> Result<Option<u32>, CmdError> {
    Ok(match request {
        served::Request::CountsOf(inode) => Some(*inode),
        served::Request::Counts => Some(crate::cmd::own_netns()?),
        // The board's.
        served::Request::Owners { .. } | served::Request::Alerts | served::Request::Records => None,
    })
}

/// The answer to a client of the counts socket: the counts record of the
/// namespace asked for, or nothing when that namespace is not counted. Its
/// mini-sockets are read again first when the kernel shows they may have
/// changed.
pub(super) fn answer(
    node: &mut Node,
    request: served::Request,
    host: &str,
    tags: &crate::config::Tags,
) -> Result<Vec<u8>, CmdError> {
    if let Some(inode) = asked_namespace(&request)?
        && node.spaces().contains_key(&inode)
    {
        node.refresh_mini_sockets(inode)?;
        node.drain_stream();
    }
    answer_now(node, request, host, tags)
}

/// The same from the namespace's state as it is (its mini-sockets as this
/// interval read them): for requests answered while the interval's work
/// runs.
pub(super) fn answer_now(
    node: &Node,
    request: served::Request,
    host: &str,
    tags: &crate::config::Tags,
) -> Result<Vec<u8>, CmdError> {
    let Some(inode) = asked_namespace(&request)? else {
        return Ok(Vec::new());
    };
    let Some(space) = node.spaces().get(&inode) else {
        return Ok(Vec::new());
    };
    let counts = node.counts(inode)?;
    let ports = node.port_series_now(inode);
    let owner = (!space.here()).then_some(&space.owner);
    let record = crate::output::record::CountsRecord {
        ports: ports.as_deref(),
        ..counts_record(
            host,
            inode,
            owner,
            &counts,
            Some(node),
            Losses::of(Some(node))?,
            tags,
            None,
        )
    };
    Ok(served::counts_line(&record))
}
