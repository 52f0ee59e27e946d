//! Checks across resources: references to Projects, Warehouses, upstream Stages and
//! (Cluster)PromotionTasks that the set does not contain, and cycles between Stages.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::build::Builder;
use crate::model::{PromotionTaskKind, Resource, ResourceKind};

impl Builder {
    pub(super) fn check_references(&mut self) {
        let mut problems: Vec<(usize, String, String)> = Vec::new();
        let have_projects = self
            .declared
            .iter()
            .any(|(k, _, _)| *k == ResourceKind::Project);
        let projects = self.known(ResourceKind::Project, None);
        for (i, e) in self.set.entries.iter().enumerate() {
            let r = &e.resource;
            if let Some(ns) = r.namespace()
                && have_projects
                && !self.is_declared(ResourceKind::Project, None, ns)
            {
                problems.push((
                    i,
                    "metadata.namespace".to_owned(),
                    format!(
                        "Project {ns:?} is not defined in this manifest set (a set that defines \
                         Projects must define the Project of every resource; defined: {})",
                        projects.join(", ")
                    ),
                ));
            }
            let Resource::Stage(stage) = r else {
                continue;
            };
            let ns = stage.metadata.namespace.as_deref();
            for (j, req) in stage.spec.requested_freight.iter().enumerate() {
                let wh = &req.origin.name;
                if !wh.is_empty() && !self.is_declared(ResourceKind::Warehouse, ns, wh) {
                    problems.push((
                        i,
                        format!("spec.requestedFreight[{j}].origin.name"),
                        format!(
                            "Warehouse {wh:?} not found in Project {:?}{}",
                            ns.unwrap_or_default(),
                            known_list("Warehouses", &self.known(ResourceKind::Warehouse, ns))
                        ),
                    ));
                }
                for (k, up) in req.sources.stages.iter().enumerate() {
                    if up.is_empty()
                        || *up == stage.metadata.name
                        || self.is_declared(ResourceKind::Stage, ns, up)
                    {
                        continue;
                    }
                    problems.push((
                        i,
                        format!("spec.requestedFreight[{j}].sources.stages[{k}]"),
                        format!(
                            "upstream Stage {up:?} not found in Project {:?}{}",
                            ns.unwrap_or_default(),
                            known_list("Stages", &self.known(ResourceKind::Stage, ns))
                        ),
                    ));
                }
            }
            if let Some(template) = &stage.spec.promotion_template {
                for (j, step) in template.spec.steps.iter().enumerate() {
                    let Some(task) = &step.task else { continue };
                    if task.name.is_empty() {
                        continue;
                    }
                    let (kind, task_ns, scope) = match task.kind {
                        PromotionTaskKind::PromotionTask => (
                            ResourceKind::PromotionTask,
                            ns,
                            format!(" in Project {:?}", ns.unwrap_or_default()),
                        ),
                        PromotionTaskKind::ClusterPromotionTask => {
                            (ResourceKind::ClusterPromotionTask, None, String::new())
                        }
                    };
                    if !self.is_declared(kind, task_ns, &task.name) {
                        problems.push((
                            i,
                            format!("spec.promotionTemplate.spec.steps[{j}].task.name"),
                            format!(
                                "{kind} {:?} not found{scope}{}",
                                task.name,
                                known_list(&format!("{kind}s"), &self.known(kind, task_ns))
                            ),
                        ));
                    }
                }
            }
        }
        for (entry, field, message) in problems {
            self.entry_error(entry, field, message);
        }
    }

    /// Finds cycles between Stages of a Project through `sources.stages`.
    pub(super) fn check_cycles(&mut self) {
        // Per project: stage name -> (entry index, edges (upstream, request idx, stage idx)).
        type Edges<'a> = Vec<(&'a str, usize, usize)>;
        let mut graphs: BTreeMap<&str, BTreeMap<&str, (usize, Edges<'_>)>> = BTreeMap::new();
        for (i, e) in self.set.entries.iter().enumerate() {
            let Resource::Stage(stage) = &e.resource else {
                continue;
            };
            let Some(ns) = stage.metadata.namespace.as_deref() else {
                continue;
            };
            let mut edges = Vec::new();
            for (j, req) in stage.spec.requested_freight.iter().enumerate() {
                for (k, up) in req.sources.stages.iter().enumerate() {
                    // Self-references are reported by Stage validation.
                    if *up != stage.metadata.name {
                        edges.push((up.as_str(), j, k));
                    }
                }
            }
            graphs
                .entry(ns)
                .or_default()
                .insert(stage.metadata.name.as_str(), (i, edges));
        }
        let mut problems = Vec::new();
        for graph in graphs.values() {
            for cycle in find_cycles(graph) {
                let (Some(first), Some(second)) = (cycle.first(), cycle.get(1)) else {
                    continue;
                };
                let Some((entry, edges)) = graph.get(first) else {
                    continue;
                };
                let field = edges
                    .iter()
                    .find(|(up, _, _)| up == second)
                    .map(|(_, j, k)| format!("spec.requestedFreight[{j}].sources.stages[{k}]"))
                    .unwrap_or_default();
                let mut path: Vec<&str> = cycle.clone();
                path.push(first);
                problems.push((
                    *entry,
                    field,
                    format!(
                        "Stages form a cycle through sources.stages: {}",
                        path.join(" -> ")
                    ),
                ));
            }
        }
        for (entry, field, message) in problems {
            self.entry_error(entry, field, message);
        }
    }
}

fn known_list(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!(" (the Project has no {what})")
    } else {
        format!(" (known {what}: {})", names.join(", "))
    }
}

/// An edge to an upstream Stage: (name, request index, index in `sources.stages`).
type Edge<'a> = (&'a str, usize, usize);
/// Stage name -> (payload, edges).
type Graph<'a, T> = BTreeMap<&'a str, (T, Vec<Edge<'a>>)>;

/// Cycles in a graph of `node -> (entry, [(successor, ..)])`, each reported once, rotated so
/// that it starts at its smallest node. Iterative, so deep graphs cannot overflow the stack.
fn find_cycles<'a, T>(graph: &Graph<'a, T>) -> Vec<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Gray,
        Black,
    }
    let mut color: HashMap<&str, Color> = graph.keys().map(|k| (*k, Color::White)).collect();
    let mut seen: HashSet<Vec<&str>> = HashSet::new();
    let mut cycles = Vec::new();
    for start in graph.keys() {
        if color.get(start) != Some(&Color::White) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        color.insert(start, Color::Gray);
        while let Some((node, next)) = stack.last().copied() {
            let succ = graph
                .get(node)
                .and_then(|(_, edges)| edges.get(next))
                .map(|e| e.0);
            let Some(succ) = succ else {
                color.insert(node, Color::Black);
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match color.get(succ) {
                Some(Color::White) => {
                    color.insert(succ, Color::Gray);
                    stack.push((succ, 0));
                }
                Some(Color::Gray) => {
                    if let Some(pos) = stack.iter().position(|(n, _)| *n == succ) {
                        let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        if let Some(min) = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .map(|(i, _)| i)
                        {
                            cycle.rotate_left(min);
                        }
                        if seen.insert(cycle.clone()) {
                            cycles.push(cycle);
                        }
                    }
                }
                // Black: fully explored; None: unknown Stage (reported as a reference error).
                _ => {}
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found_once() {
        let mut g: Graph<'_, ()> = BTreeMap::new();
        g.insert("a", ((), vec![("b", 0, 0)]));
        g.insert("b", ((), vec![("c", 0, 0)]));
        g.insert("c", ((), vec![("a", 0, 0), ("d", 0, 1)]));
        g.insert("d", ((), vec![]));
        assert_eq!(find_cycles(&g), vec![vec!["a", "b", "c"]]);
    }
}
