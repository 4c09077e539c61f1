//! The page of a watch of every namespace (`--all-namespaces`): each
//! namespace's series labelled with its inode, class and owner, then the
//! node-wide families (namespaces counted, untracked, netconn's health).

use crate::model::counts::Counts;
use crate::namespaces::owner::Owner;
use crate::output::figures::PortSeries;
use crate::output::record::Source;
use crate::prometheus::exporter::{Exporter, Health, health, info};
use crate::prometheus::page::{Family, Labels, Page, Value, labels};

/// One namespace's part of the page: its counts and port groups' series
/// now, and the exporter that keeps its interval figures (None: none
/// yet).
pub struct Namespace<'a> {
    pub netns: u32,
    pub owner: &'a Owner,
    pub counts: Counts,
    pub ports: Option<Vec<PortSeries>>,
    pub exporter: Option<&'a Exporter>,
}

/// The labels of a namespace's series: its inode, class and owner.
fn namespace_labels(netns: u32, owner: &Owner) -> Labels {
    let known = |v: &Option<String>| v.clone().unwrap_or_default();
    labels([
        ("netns", netns.to_string()),
        ("namespace", crate::host::namespace_class(netns).into()),
        ("netns_name", known(&owner.netns_name)),
        ("runtime", owner.runtime.unwrap_or_default().into()),
        ("container_id", known(&owner.container_id)),
        ("pod", known(&owner.k8s_pod_name)),
        ("pod_uid", known(&owner.k8s_pod_uid)),
        ("k8s_namespace", known(&owner.k8s_namespace)),
    ])
}

/// The page of `namespaces`; `untracked`: namespaces past the bound of
/// those counted apart (None when polled: every one is).
pub fn page<'a>(
    source: Source,
    namespaces: impl IntoIterator<Item = Namespace<'a>>,
    untracked: Option<usize>,
    h: Health,
) -> Page {
    let none = Exporter::new();
    let mut page = Page(vec![info(source)]);
    let mut counted = 0i64;
    for ns in namespaces {
        let exporter = ns.exporter.unwrap_or(&none);
        page.merge(
            exporter.families(&ns.counts, ns.ports.as_deref()),
            &namespace_labels(ns.netns, ns.owner),
        );
        counted += 1;
    }
    page.merge(
        vec![
            Family::new("netconn_namespaces", "Network namespaces counted.")
                .with(vec![], Value::Gauge(counted)),
        ],
        &Vec::new(),
    );
    if let Some(untracked) = untracked {
        page.merge(
            vec![
                Family::new(
                    "netconn_namespaces_untracked",
                    "Namespaces past the bound of those counted apart in the kernel.",
                )
                .with(vec![], Value::Gauge(untracked as i64)),
            ],
            &Vec::new(),
        );
    }
    page.merge(health(h), &Vec::new());
    page
}
