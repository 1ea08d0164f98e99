//! Runs nodes of a plan over the hosts' transports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::event::{Event, StepOutcome, LOCAL_LABEL};
use crate::plan::chain::{self, ChainStep, Frame, FrameParser};
use std::collections::BTreeSet;

use crate::plan::commands::{self, HostPaths};
use crate::plan::queue::{NodeState, Queue};
use crate::plan::{Action, Phase, Plan};
use crate::redact::Redactor;
use crate::shell::quote;
use crate::transport::{CommandOutput, Transport, TransportError};

/// Where events go. Cloneable; sending never blocks.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
}

impl EventSink {
    pub fn new() -> (EventSink, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSink { tx }, rx)
    }

    pub fn send(&self, e: Event) {
        // The receiver only goes away when the program is ending.
        let _ = self.tx.send(e);
    }
}

/// What a run of the executor left: each node's result, the queue's final
/// states, and the hosts whose publish failure was tolerated.
pub struct RunReport {
    pub results: Vec<Option<NodeResult>>,
    pub queue: Queue,
    pub tolerated: Vec<usize>,
}

/// How long telling a host to stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one node.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub ok: bool,
    pub output: Option<CommandOutput>,
    /// Why it failed, for people: `exit 1`, `timed out after 60s`, ...
    pub reason: Option<String>,
    pub duration: Duration,
}

/// Time a chain may take beyond the sum of its steps' limits (connection,
/// the wrapper script).
const CHAIN_SLACK: Duration = Duration::from_secs(30);

/// How many lines of a failed command's output are kept.
pub const TAIL_LINES: usize = 12;

/// The last lines of stderr, or of stdout when stderr has none.
pub fn tail(out: &CommandOutput, redactor: &Redactor) -> Vec<String> {
    let err = out.stderr_str();
    let text = if err.trim().is_empty() {
        out.stdout_str()
    } else {
        err
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..]
        .iter()
        .map(|l| redactor.apply(l).into_owned())
        .collect()
}

/// Runs nodes of one plan. Holds the transports (index = plan host) and
/// counts the commands sent to each host.
pub struct Executor {
    transports: Vec<Option<Arc<dyn Transport>>>,
    local: Arc<dyn Transport>,
    uploads: Arc<HashMap<(usize, usize), Vec<u8>>>,
    /// Strategy copy: the release archive, shared by every host's upload.
    artifact: Option<Arc<Vec<u8>>>,
    events: EventSink,
    redactor: Arc<Redactor>,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    round_trips: Arc<Vec<AtomicUsize>>,
}

impl Executor {
    /// `transports[i]` is host `i`'s connection, `None` when it could not be
    /// made (its nodes fail at once). `uploads[(host, template)]` holds the
    /// rendered templates. `parallel` bounds the nodes running at once.
    pub fn new(
        transports: Vec<Option<Arc<dyn Transport>>>,
        local: Arc<dyn Transport>,
        uploads: HashMap<(usize, usize), Vec<u8>>,
        events: EventSink,
        redactor: Redactor,
        parallel: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let n = transports.len();
        Executor {
            transports,
            local,
            uploads: Arc::new(uploads),
            artifact: None,
            events,
            redactor: Arc::new(redactor),
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            shutdown,
            round_trips: Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect()),
        }
    }

    /// The release archive that `Action::Artifact` nodes upload.
    pub fn set_artifact(&mut self, artifact: Option<Arc<Vec<u8>>>) {
        self.artifact = artifact;
    }

    /// Replaces the rendered templates (after the release id changed).
    pub fn set_uploads(&mut self, uploads: HashMap<(usize, usize), Vec<u8>>) {
        self.uploads = Arc::new(uploads);
    }

    pub fn round_trips(&self, host: usize) -> usize {
        self.round_trips[host].load(Ordering::Relaxed)
    }

    pub fn interrupted(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn events(&self) -> &EventSink {
        &self.events
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Runs one script on host `h` outside the plan (undo, unlock), with the
    /// same accounting and events as a node.
    pub async fn run_on(
        &self,
        h: usize,
        label: &str,
        step: &str,
        script: &str,
        timeout: Duration,
    ) -> NodeResult {
        let Some(t) = self.transports[h].clone() else {
            return NodeResult {
                ok: false,
                output: None,
                reason: Some("not connected".into()),
                duration: Duration::ZERO,
            };
        };
        run_one(RunOne {
            transport: t,
            label: label.to_string(),
            step: step.to_string(),
            script: script.to_string(),
            stdin: None,
            timeout,
            events: self.events.clone(),
            redactor: self.redactor.clone(),
            counter: Some((self.round_trips.clone(), h)),
        })
        .await
    }

    /// Runs the nodes of `plan` for which `include` is true, in dependency
    /// order, until all have run or been skipped. After an interrupt, starts
    /// nothing new and lets running nodes finish (or time out).
    pub async fn run(
        &mut self,
        plan: &Plan,
        include: impl Fn(usize) -> bool,
        max_failures: usize,
    ) -> RunReport {
        // Hosts that failed in the publish phase, and those of them the run
        // tolerates (`max_failures`).
        let mut publish_failed: BTreeSet<usize> = BTreeSet::new();
        let mut tolerated: BTreeSet<usize> = BTreeSet::new();
        // Hosts with a chain on the wire, to tell them to stop on interrupt.
        let mut busy: BTreeSet<usize> = BTreeSet::new();
        // Barriers always take part: they hold later phases back.
        let mut queue = Queue::new(plan, |n| plan.nodes[n].step.is_none() || include(n));
        let mut results: Vec<Option<NodeResult>> = vec![None; plan.nodes.len()];
        let mut running: JoinSet<Vec<(usize, Option<NodeResult>)>> = JoinSet::new();
        let mut announced_batch: Option<usize> = None;
        let mut interrupted = self.interrupted();
        if interrupted {
            queue.cancel_pending();
        }
        loop {
            if !interrupted {
                while let Some(n) = queue.dequeue() {
                    let node = &plan.nodes[n];
                    let Some(si) = node.step else {
                        queue.finish(n, true);
                        continue;
                    };
                    let step = &plan.steps[si];
                    if let (Some(h), crate::plan::Phase::Publish) = (node.host, step.phase) {
                        if let Some(b) = plan.batches.iter().position(|b| b.contains(&h)) {
                            if announced_batch.is_none_or(|a| a < b) && plan.batches.len() > 1 {
                                announced_batch = Some(b);
                                self.events.send(Event::BatchStarted {
                                    index: b + 1,
                                    of: plan.batches.len(),
                                    hosts: plan.batches[b]
                                        .iter()
                                        .map(|&x| plan.hosts[x].name.clone())
                                        .collect(),
                                });
                            }
                        }
                    }
                    let (transport, label, counter) = match node.host {
                        Some(h) => match &self.transports[h] {
                            Some(t) => (
                                t.clone(),
                                plan.hosts[h].name.clone(),
                                Some((self.round_trips.clone(), h)),
                            ),
                            None => {
                                let r = NodeResult {
                                    ok: false,
                                    output: None,
                                    reason: Some("not connected".into()),
                                    duration: Duration::ZERO,
                                };
                                results[n] = Some(r);
                                queue.finish(n, false);
                                continue;
                            }
                        },
                        None => (self.local.clone(), LOCAL_LABEL.to_string(), None),
                    };
                    if let Action::Artifact(script) = &node.action {
                        // Streamed in a round trip of its own.
                        let job = RunOne {
                            transport,
                            label,
                            step: step.name.clone(),
                            script: script.clone(),
                            stdin: self.artifact.clone(),
                            timeout: step.timeout,
                            events: self.events.clone(),
                            redactor: self.redactor.clone(),
                            counter,
                        };
                        let permits = self.permits.clone();
                        running.spawn(async move {
                            let _permit = permits.acquire_owned().await;
                            vec![(n, Some(run_one(job).await))]
                        });
                        continue;
                    }
                    // The rest of this host's work that can go in the same
                    // round trip: each next node depends on this one alone.
                    let mut chain = vec![n];
                    if let Some(h) = node.host {
                        let mut cur = n;
                        while let Some(d) = queue.dependents(cur).iter().copied().find(|&d| {
                            let x = &plan.nodes[d];
                            x.host == Some(h)
                                && x.step.is_some()
                                && x.deps == [cur]
                                && !matches!(x.action, Action::Artifact(_))
                                && queue.state(d) == NodeState::Waiting
                        }) {
                            queue.claim(d);
                            chain.push(d);
                            cur = d;
                        }
                    }
                    let steps: Vec<ChainJobStep> = chain
                        .iter()
                        .map(|&c| {
                            let x = &plan.nodes[c];
                            let st = &plan.steps[x.step.expect("chains hold steps")];
                            let stdin = match &x.action {
                                Action::Upload { template, .. } => x
                                    .host
                                    .and_then(|h| self.uploads.get(&(h, *template)).cloned()),
                                _ => None,
                            };
                            ChainJobStep {
                                node: c,
                                name: st.name.clone(),
                                script: x.action.script().to_string(),
                                stdin,
                                timeout: st.timeout,
                            }
                        })
                        .collect();
                    let stop = node.host.map(|h| {
                        busy.insert(h);
                        commands::stop_flag(
                            &HostPaths::new(&plan.hosts[h].deploy_to),
                            &plan.release.id,
                        )
                    });
                    let job = ChainJob {
                        transport,
                        label,
                        stop,
                        steps,
                        events: self.events.clone(),
                        redactor: self.redactor.clone(),
                        counter,
                    };
                    let permits = self.permits.clone();
                    running.spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        run_chain(job).await
                    });
                }
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                joined = running.join_next() => {
                    match joined {
                        Some(Ok(done)) => {
                            let host = done.first().and_then(|(n, _)| plan.nodes[*n].host);
                            if let Some(h) = host {
                                busy.remove(&h);
                            }
                            let mut stopped = false;
                            for (n, r) in done {
                                match r {
                                    Some(r) if !stopped => {
                                        stopped = !r.ok;
                                        let in_publish = plan.phase_of(n) == Some(Phase::Publish);
                                        match (r.ok, host) {
                                            (false, Some(h)) if in_publish => {
                                                publish_failed.insert(h);
                                                if publish_failed.len() <= max_failures {
                                                    tolerated.insert(h);
                                                    queue.finish_tolerated(n);
                                                } else {
                                                    queue.finish(n, false);
                                                }
                                            }
                                            _ => {
                                                queue.finish(n, r.ok);
                                            }
                                        }
                                        results[n] = Some(r);
                                    }
                                    _ => {
                                        stopped = true;
                                        if queue.state(n) == NodeState::Running {
                                            if host.is_some_and(|h| tolerated.contains(&h)) {
                                                queue.skip_tolerated(n);
                                            } else {
                                                queue.skip(n);
                                            }
                                        }
                                    }
                                }
                            }
                            // A tolerated host does nothing more in this run.
                            if let Some(h) = host.filter(|h| tolerated.contains(h)) {
                                for i in 0..plan.nodes.len() {
                                    if plan.nodes[i].host == Some(h)
                                        && matches!(queue.state(i), NodeState::Waiting | NodeState::Ready)
                                    {
                                        queue.skip_tolerated(i);
                                    }
                                }
                            }
                        }
                        Some(Err(e)) => {
                            // A panicking node is a bug; the run still ends
                            // cleanly with the rest recorded.
                            self.events.send(Event::Notice(format!("internal error in a step: {e}")));
                        }
                        None => {}
                    }
                }
                _ = self.shutdown.changed(), if !interrupted => {
                    interrupted = true;
                    queue.cancel_pending();
                    // Chains already on a host stop after their current step.
                    for &h in &busy {
                        if let Some(t) = self.transports[h].clone() {
                            let flag = commands::stop_flag(
                                &HostPaths::new(&plan.hosts[h].deploy_to),
                                &plan.release.id,
                            );
                            tokio::spawn(async move {
                                let _ = t
                                    .run(&format!("touch {}", quote(&flag)), None, STOP_TIMEOUT)
                                    .await;
                            });
                        }
                    }
                    self.events.send(Event::Notice(format!(
                        "interrupted: starting nothing new; waiting for {} running step(s) to finish",
                        running.len()
                    )));
                }
            }
        }
        // Nodes whose state says they ran but whose result was lost count as
        // failed.
        for (i, r) in results.iter_mut().enumerate() {
            if r.is_none() && queue.state(i) == NodeState::Failed {
                *r = Some(NodeResult {
                    ok: false,
                    output: None,
                    reason: Some("failed".into()),
                    duration: Duration::ZERO,
                });
            }
        }
        RunReport {
            results,
            queue,
            tolerated: tolerated.into_iter().collect(),
        }
    }
}

struct RunOne {
    transport: Arc<dyn Transport>,
    label: String,
    step: String,
    script: String,
    stdin: Option<Arc<Vec<u8>>>,
    timeout: Duration,
    events: EventSink,
    redactor: Arc<Redactor>,
    counter: Option<(Arc<Vec<AtomicUsize>>, usize)>,
}

async fn run_one(job: RunOne) -> NodeResult {
    job.events.send(Event::StepStarted {
        host: job.label.clone(),
        step: job.step.clone(),
    });
    if let Some((c, h)) = &job.counter {
        c[*h].fetch_add(1, Ordering::Relaxed);
    }
    let started = Instant::now();
    let res = job
        .transport
        .run(
            &job.script,
            job.stdin.as_deref().map(|v| v.as_slice()),
            job.timeout,
        )
        .await;
    let duration = started.elapsed();
    let (ok, output, reason, tail_lines) = match res {
        Ok(out) => {
            let ok = out.success();
            let reason = if ok {
                None
            } else {
                Some(match out.status {
                    Some(c) => format!("exit {c}"),
                    None => "killed by a signal".to_string(),
                })
            };
            let t = if ok {
                Vec::new()
            } else {
                tail(&out, &job.redactor)
            };
            (ok, Some(out), reason, t)
        }
        Err(e) => {
            let reason = match &e {
                TransportError::Timeout { secs, .. } => format!("timed out after {secs}s"),
                other => other.to_string(),
            };
            (
                false,
                None,
                Some(job.redactor.apply(&reason).into_owned()),
                Vec::new(),
            )
        }
    };
    tracing::debug!(
        host = %job.label,
        step = %job.step,
        ok,
        ms = duration.as_millis(),
        "step finished"
    );
    job.events.send(Event::StepFinished {
        host: job.label,
        step: job.step,
        outcome: match &reason {
            None => StepOutcome::Ok,
            Some(r) => StepOutcome::Failed(r.clone()),
        },
        duration,
        tail: tail_lines,
    });
    NodeResult {
        ok,
        output,
        reason,
        duration,
    }
}

struct ChainJobStep {
    node: usize,
    name: String,
    script: String,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

struct ChainJob {
    transport: Arc<dyn Transport>,
    label: String,
    /// The host's stop flag (see [`commands::stop_flag`]).
    stop: Option<String>,
    steps: Vec<ChainJobStep>,
    events: EventSink,
    redactor: Arc<Redactor>,
    counter: Option<(Arc<Vec<AtomicUsize>>, usize)>,
}

fn finished(
    job: &ChainJob,
    i: usize,
    ok: bool,
    output: Option<CommandOutput>,
    reason: Option<String>,
    duration: Duration,
) -> NodeResult {
    // Successful steps keep their tail too: `-v` and JSON show it.
    let tail_lines = match &output {
        Some(o) => tail(o, &job.redactor),
        None => Vec::new(),
    };
    job.events.send(Event::StepFinished {
        host: job.label.clone(),
        step: job.steps[i].name.clone(),
        outcome: match &reason {
            None => StepOutcome::Ok,
            Some(r) => StepOutcome::Failed(r.clone()),
        },
        duration,
        tail: tail_lines,
    });
    NodeResult {
        ok,
        output,
        reason,
        duration,
    }
}

/// Runs a chain of one host's steps in one round trip and turns the frames
/// into per-step events and results. A step that was not reached is `None`.
async fn run_chain(job: ChainJob) -> Vec<(usize, Option<NodeResult>)> {
    let script = chain::script(
        job.stop.as_deref(),
        &job.steps
            .iter()
            .enumerate()
            .map(|(i, s)| ChainStep {
                id: i,
                script: &s.script,
                stdin: s.stdin.as_deref(),
                timeout: s.timeout,
            })
            .collect::<Vec<_>>(),
    );
    let budget = job.steps.iter().map(|s| s.timeout).sum::<Duration>() + CHAIN_SLACK;
    if let Some((c, h)) = &job.counter {
        c[*h].fetch_add(1, Ordering::Relaxed);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let transport = job.transport.clone();
    let script_bytes = script.into_bytes();
    let run = tokio::spawn(async move {
        transport
            .run_streaming(chain::RUNNER, Some(&script_bytes), budget, tx)
            .await
    });
    let mut parser = FrameParser::default();
    let mut results: Vec<Option<NodeResult>> = job.steps.iter().map(|_| None).collect();
    let mut started: Vec<Option<Instant>> = vec![None; job.steps.len()];
    while let Some(chunk) = rx.recv().await {
        for frame in parser.push(&chunk) {
            match frame {
                Frame::Started(i) if i < job.steps.len() => {
                    started[i] = Some(Instant::now());
                    job.events.send(Event::StepStarted {
                        host: job.label.clone(),
                        step: job.steps[i].name.clone(),
                    });
                }
                Frame::Ended {
                    id: i,
                    status,
                    stdout,
                    stderr,
                } if i < job.steps.len() => {
                    let duration = started[i].map(|s| s.elapsed()).unwrap_or_default();
                    let out = CommandOutput {
                        status: Some(status),
                        stdout,
                        stderr,
                    };
                    let (ok, reason) = match status {
                        0 => (true, None),
                        chain::TIMEOUT_STATUS
                            if duration + Duration::from_millis(50) >= job.steps[i].timeout =>
                        {
                            (
                                false,
                                Some(format!(
                                    "timed out after {}s",
                                    job.steps[i].timeout.as_secs()
                                )),
                            )
                        }
                        c => (false, Some(format!("exit {c}"))),
                    };
                    tracing::debug!(
                        host = %job.label,
                        step = %job.steps[i].name,
                        ok,
                        ms = duration.as_millis(),
                        "step finished"
                    );
                    results[i] = Some(finished(&job, i, ok, Some(out), reason, duration));
                }
                _ => {}
            }
        }
    }
    let outcome = match run.await {
        Ok(r) => r,
        Err(e) => Err(TransportError::Io {
            host: job.label.clone(),
            reason: format!("internal error: {e}"),
        }),
    };
    // The first step without a result is where the chain broke off, if it
    // did: it fails with the transport's reason.
    if let Some(i) = results.iter().position(|r| r.is_none()) {
        let stopped_by_failure = results[..i]
            .iter()
            .any(|r| r.as_ref().is_some_and(|r| !r.ok));
        if !stopped_by_failure {
            let reason = match &outcome {
                Err(TransportError::Timeout { secs, .. }) => format!("timed out after {secs}s"),
                Err(e) => e.to_string(),
                Ok(out) => {
                    let err = out.stderr_str();
                    let err = err.trim();
                    if err.is_empty() {
                        format!("the host's shell ended early (status {:?})", out.status)
                    } else {
                        format!("the host's shell ended early: {err}")
                    }
                }
            };
            let reason = job.redactor.apply(&reason).into_owned();
            let duration = started[i].map(|s| s.elapsed()).unwrap_or_default();
            results[i] = Some(finished(&job, i, false, None, Some(reason), duration));
        }
    }
    job.steps
        .iter()
        .zip(results)
        .map(|(s, r)| (s.node, r))
        .collect()
}
