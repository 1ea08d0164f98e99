//! Runs nodes of a plan over the hosts' transports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::event::{Event, StepOutcome, LOCAL_LABEL};
use super::http_probe;
use crate::plan::chain::{self, ChainStep, Frame, FrameParser};
use crate::plan::http_check::HttpCheck;
use std::collections::BTreeSet;

use crate::plan::commands::{self, HostPaths};
use crate::plan::queue::{NodeState, Queue};
use crate::plan::{Action, Phase, Plan, Recipe};
use crate::redact::Redactor;
use crate::shell::quote_path;
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

/// How long past a step's time limit its end may take to arrive before the
/// host is asked whether it is still there: the host's `timeout` has
/// ended the step by then (TERM at the limit), unless the step ignores
/// TERM (KILL follows five seconds later) or the host stopped answering.
pub const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// How long a host that is silent past a step's limit has to answer a
/// trivial command before it counts as gone.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a host that still answers, but whose step overran its limit,
/// is asked again.
const RECHECK: Duration = Duration::from_secs(5);

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

/// A command's whole output as redacted lines, without trailing blank
/// lines (what an `Output` event carries).
pub fn output_lines(text: &str, redactor: &Redactor) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(|l| redactor.apply(l).into_owned())
        .collect();
    while v.last().is_some_and(|l| l.trim().is_empty()) {
        v.pop();
    }
    v
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

    /// Runs one script on the machine running shipit (a `local: true` task
    /// outside the plan, as during an undo), reported under `local`.
    pub async fn run_local(&self, step: &str, script: &str, timeout: Duration) -> NodeResult {
        run_one(RunOne {
            transport: self.local.clone(),
            label: LOCAL_LABEL.to_string(),
            step: step.to_string(),
            script: script.to_string(),
            stdin: None,
            timeout,
            events: self.events.clone(),
            redactor: self.redactor.clone(),
            counter: None,
        })
        .await
    }

    /// A script to run on this machine, reported under `label` (a host's
    /// name for its drain or undrain).
    fn local_job(&self, label: &str, step: &str, script: &str, timeout: Duration) -> RunOne {
        RunOne {
            transport: self.local.clone(),
            label: label.to_string(),
            step: step.to_string(),
            script: script.to_string(),
            stdin: None,
            timeout,
            events: self.events.clone(),
            redactor: self.redactor.clone(),
            counter: None,
        }
    }

    /// Runs one node's action for host `h` outside a plan (the undo of a
    /// publish drains and undrains, and checks over HTTP, this way), with
    /// the same events as in a plan: a script on the host, a script on
    /// this machine in the host's name, or an HTTP check.
    pub async fn run_action(
        &self,
        h: usize,
        label: &str,
        step: &str,
        action: &Action,
        timeout: Duration,
    ) -> NodeResult {
        match action {
            Action::Local(script) => run_one(self.local_job(label, step, script, timeout)).await,
            Action::Http { check, then } => {
                let Some(transport) = self.transports[h].clone() else {
                    return NodeResult {
                        ok: false,
                        output: None,
                        reason: Some("not connected".into()),
                        duration: Duration::ZERO,
                    };
                };
                run_http(HttpJob {
                    check: check.clone(),
                    then: then.clone(),
                    transport,
                    label: label.to_string(),
                    step: step.to_string(),
                    timeout,
                    events: self.events.clone(),
                    redactor: self.redactor.clone(),
                    counter: Some((self.round_trips.clone(), h)),
                })
                .await
            }
            other => self.run_on(h, label, step, other.script(), timeout).await,
        }
    }

    /// Runs the nodes of `plan` for which `include` is true, in dependency
    /// order, until all have run or been skipped. After an interrupt, starts
    /// nothing new and lets running nodes finish (or time out). Never
    /// returns half-way: every node ends recorded (see [`DrainState`]).
    pub async fn run(
        &self,
        plan: &Plan,
        include: impl Fn(usize) -> bool,
        max_failures: usize,
    ) -> RunReport {
        let mut st = DrainState::new(plan, include, max_failures, self.interrupted());
        let mut shutdown = self.shutdown.clone();
        loop {
            if !st.interrupted {
                self.start_ready(&mut st);
            }
            if st.running.is_empty() {
                break;
            }
            tokio::select! {
                joined = st.running.join_next() => match joined {
                    Some(Ok(done)) => st.finish_chain(done),
                    // A panicking node is a bug; the run still ends cleanly
                    // with the rest recorded.
                    Some(Err(e)) => self
                        .events
                        .send(Event::Notice(format!("internal error in a step: {e}"))),
                    None => {}
                },
                _ = shutdown.changed(), if !st.interrupted => self.interrupt(&mut st),
            }
        }
        st.into_report()
    }

    /// Starts every node that is ready: a barrier finishes at once, a node
    /// of a host without a connection fails at once, an artifact upload
    /// goes in a round trip of its own, and anything else starts a chain.
    fn start_ready(&self, st: &mut DrainState<'_>) {
        let plan = st.plan;
        while let Some(n) = st.queue.dequeue() {
            let node = &plan.nodes[n];
            let Some(si) = node.step else {
                st.queue.finish(n, true);
                continue;
            };
            let step = &plan.steps[si];
            if let (Some(h), Phase::Publish) = (node.host, step.phase) {
                st.announce_batch(h, &self.events);
            }
            let (transport, label, counter) = match node.host {
                Some(h) => match &self.transports[h] {
                    Some(t) => (
                        t.clone(),
                        plan.hosts[h].name.to_string(),
                        Some((self.round_trips.clone(), h)),
                    ),
                    None => {
                        st.results[n] = Some(NodeResult {
                            ok: false,
                            output: None,
                            reason: Some("not connected".into()),
                            duration: Duration::ZERO,
                        });
                        st.queue.finish(n, false);
                        continue;
                    }
                },
                None => (self.local.clone(), LOCAL_LABEL.to_string(), None),
            };
            if let (Action::Local(script), Some(h)) = (&node.action, node.host) {
                // The host's drain or undrain, run here in its name.
                let job = self.local_job(
                    plan.hosts[h].name.as_str(),
                    &step.name,
                    script,
                    step.timeout,
                );
                let permits = self.permits.clone();
                st.running.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    vec![(n, Some(run_one(job).await))]
                });
                continue;
            }
            if let Action::Http { check, then } = &node.action {
                let job = HttpJob {
                    check: check.clone(),
                    then: then.clone(),
                    transport,
                    label,
                    step: step.name.clone(),
                    timeout: step.timeout,
                    events: self.events.clone(),
                    redactor: self.redactor.clone(),
                    counter,
                };
                let permits = self.permits.clone();
                st.running.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    vec![(n, Some(run_http(job).await))]
                });
                continue;
            }
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
                st.running.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    vec![(n, Some(run_one(job).await))]
                });
                continue;
            }
            let chain = st.claim_chain(n);
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
                        quiet: st.quiet,
                        output: st.output,
                        name: st.name.clone(),
                        script: x.action.script().to_string(),
                        stdin,
                        timeout: st.timeout,
                    }
                })
                .collect();
            let stop = node.host.and_then(|h| {
                let flag = stop_flag(plan, h)?;
                st.busy.insert(h);
                Some(flag)
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
            st.running.spawn(async move {
                let _permit = permits.acquire_owned().await;
                run_chain(job).await
            });
        }
    }

    /// The first interrupt: start nothing new, and tell the chains already
    /// on a host to stop after their current step.
    fn interrupt(&self, st: &mut DrainState<'_>) {
        st.interrupted = true;
        st.queue.cancel_pending();
        for &h in &st.busy {
            if let (Some(t), Some(flag)) = (self.transports[h].clone(), stop_flag(st.plan, h)) {
                tokio::spawn(async move {
                    let _ = t
                        .run(&format!("touch {}", quote_path(&flag)), None, STOP_TIMEOUT)
                        .await;
                });
            }
        }
        self.events.send(Event::Notice(format!(
            "interrupted: starting nothing new; waiting for {} running step(s) to finish",
            st.running.len()
        )));
    }
}

/// The executor's state while it drains a plan (cargo's `DrainState`):
/// the queue, what is running, each node's result so far, and the publish
/// failures counted against `max_failures`. Every way out goes through
/// [`DrainState::into_report`], so no node is left unaccounted for.
struct DrainState<'p> {
    plan: &'p Plan,
    queue: Queue,
    results: Vec<Option<NodeResult>>,
    running: JoinSet<Vec<(usize, Option<NodeResult>)>>,
    /// Hosts that failed in the publish phase, and those of them the run
    /// tolerates (`max_failures`).
    publish_failed: BTreeSet<usize>,
    tolerated: BTreeSet<usize>,
    max_failures: usize,
    /// Hosts with a chain on the wire, to tell them to stop on interrupt.
    busy: BTreeSet<usize>,
    announced_batch: Option<usize>,
    interrupted: bool,
}

impl<'p> DrainState<'p> {
    fn new(
        plan: &'p Plan,
        include: impl Fn(usize) -> bool,
        max_failures: usize,
        interrupted: bool,
    ) -> Self {
        // Barriers always take part: they hold later phases back.
        let mut queue = Queue::new(plan, |n| plan.nodes[n].step.is_none() || include(n));
        if interrupted {
            queue.cancel_pending();
        }
        DrainState {
            plan,
            queue,
            results: vec![None; plan.nodes.len()],
            running: JoinSet::new(),
            publish_failed: BTreeSet::new(),
            tolerated: BTreeSet::new(),
            max_failures,
            busy: BTreeSet::new(),
            announced_batch: None,
            interrupted,
        }
    }

    /// Says when the first node of a new publish batch starts.
    fn announce_batch(&mut self, host: usize, events: &EventSink) {
        let plan = self.plan;
        let Some(b) = plan.batches.iter().position(|b| b.contains(&host)) else {
            return;
        };
        if self.announced_batch.is_none_or(|a| a < b) && plan.batches.len() > 1 {
            self.announced_batch = Some(b);
            events.send(Event::BatchStarted {
                index: b + 1,
                of: plan.batches.len(),
                hosts: plan.batches[b]
                    .iter()
                    .map(|&x| plan.hosts[x].name.to_string())
                    .collect(),
            });
        }
    }

    /// `n` and the rest of its host's work that can go in the same round
    /// trip: each next node depends on the one before alone.
    fn claim_chain(&mut self, n: usize) -> Vec<usize> {
        let plan = self.plan;
        let mut chain = vec![n];
        let Some(h) = plan.nodes[n].host else {
            return chain;
        };
        let mut cur = n;
        while let Some(d) = self.queue.dependents(cur).iter().copied().find(|&d| {
            let x = &plan.nodes[d];
            x.host == Some(h)
                && x.step.is_some()
                && x.deps == [cur]
                && !matches!(
                    x.action,
                    Action::Artifact(_) | Action::Local(_) | Action::Http { .. }
                )
                && self.queue.state(d) == NodeState::Waiting
        }) {
            self.queue.claim(d);
            chain.push(d);
            cur = d;
        }
        chain
    }

    /// Records a finished chain: each step's result, the first failure
    /// stopping the rest; a publish failure within `max_failures` is
    /// tolerated and that host does nothing more in this run.
    fn finish_chain(&mut self, done: Vec<(usize, Option<NodeResult>)>) {
        let plan = self.plan;
        let host = done.first().and_then(|(n, _)| plan.nodes[*n].host);
        if let Some(h) = host {
            self.busy.remove(&h);
        }
        let mut stopped = false;
        for (n, r) in done {
            match r {
                Some(r) if !stopped => {
                    stopped = !r.ok;
                    let in_publish = plan.phase_of(n) == Some(Phase::Publish);
                    match (r.ok, host) {
                        (false, Some(h)) if in_publish => {
                            self.publish_failed.insert(h);
                            if self.publish_failed.len() <= self.max_failures {
                                self.tolerated.insert(h);
                                self.queue.finish_tolerated(n);
                            } else {
                                self.queue.finish(n, false);
                            }
                        }
                        _ => {
                            self.queue.finish(n, r.ok);
                        }
                    }
                    self.results[n] = Some(r);
                }
                _ => {
                    stopped = true;
                    if self.queue.state(n) == NodeState::Running {
                        if host.is_some_and(|h| self.tolerated.contains(&h)) {
                            self.queue.skip_tolerated(n);
                        } else {
                            self.queue.skip(n);
                        }
                    }
                }
            }
        }
        // A tolerated host does nothing more in this run.
        if let Some(h) = host.filter(|h| self.tolerated.contains(h)) {
            for i in 0..plan.nodes.len() {
                if plan.nodes[i].host == Some(h)
                    && matches!(self.queue.state(i), NodeState::Waiting | NodeState::Ready)
                {
                    self.queue.skip_tolerated(i);
                }
            }
        }
    }

    /// The run's report. Nodes whose state says they ran but whose result
    /// was lost count as failed.
    fn into_report(mut self) -> RunReport {
        for (i, r) in self.results.iter_mut().enumerate() {
            if r.is_none() && self.queue.state(i) == NodeState::Failed {
                *r = Some(NodeResult {
                    ok: false,
                    output: None,
                    reason: Some("failed".into()),
                    duration: Duration::ZERO,
                });
            }
        }
        RunReport {
            results: self.results,
            queue: self.queue,
            tolerated: self.tolerated.into_iter().collect(),
        }
    }
}

/// Host `h`'s stop flag (see [`commands::stop_flag`]), for a deploy's
/// plan: only a deploy's chains stop half-way on an interrupt. Other plans
/// (`rollback`, `check`, `exec`, ...) have none: interrupting them writes
/// nothing under `deploy_to`, and their running chains finish (each step
/// within its time limit).
fn stop_flag(plan: &Plan, h: usize) -> Option<String> {
    if plan.recipe != Recipe::Deploy || plan.release.id.is_empty() {
        return None;
    }
    Some(commands::stop_flag(
        &HostPaths::of_plan(&plan.hosts[h]),
        &plan.release.id,
    ))
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
        outcome: StepOutcome::from_reason(reason.as_deref()),
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

/// Whether the host behind `t` still runs a trivial command within
/// [`PROBE_TIMEOUT`].
async fn still_answers(t: &Arc<dyn Transport>) -> bool {
    t.run("true", None, PROBE_TIMEOUT)
        .await
        .is_ok_and(|o| o.success())
}

/// An `http:` smoke test of one host, then (when it passes) its `then`
/// script on the host.
struct HttpJob {
    check: HttpCheck,
    then: String,
    transport: Arc<dyn Transport>,
    label: String,
    step: String,
    timeout: Duration,
    events: EventSink,
    redactor: Arc<Redactor>,
    counter: Option<(Arc<Vec<AtomicUsize>>, usize)>,
}

/// Runs an [`HttpJob`] within its step's time limit, as one step: the
/// failure tail is the last answer's status and the first lines of its
/// body.
async fn run_http(job: HttpJob) -> NodeResult {
    job.events.send(Event::StepStarted {
        host: job.label.clone(),
        step: job.step.clone(),
    });
    let started = Instant::now();
    let work = async {
        if let Err(lines) = http_probe::check(&job.check).await {
            let why = lines.first().cloned().unwrap_or_default();
            let reason = match why.split_once(" answered ") {
                Some((_, rest)) => format!("answered {}", rest.split(" (").next().unwrap_or(rest)),
                None => "no answer".to_string(),
            };
            let out = CommandOutput {
                status: Some(1),
                stdout: Vec::new(),
                stderr: lines.join("\n").into_bytes(),
            };
            return (false, Some(out), Some(reason));
        }
        if job.then.is_empty() {
            let out = CommandOutput {
                status: Some(0),
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
            return (true, Some(out), None);
        }
        if let Some((c, h)) = &job.counter {
            c[*h].fetch_add(1, Ordering::Relaxed);
        }
        match job.transport.run(&job.then, None, job.timeout).await {
            Ok(out) if out.success() => (true, Some(out), None),
            Ok(out) => {
                let reason = match out.status {
                    Some(c) => format!("exit {c}"),
                    None => "killed by a signal".to_string(),
                };
                (false, Some(out), Some(reason))
            }
            Err(e) => (false, None, Some(e.to_string())),
        }
    };
    let (ok, output, reason) = match tokio::time::timeout(job.timeout, work).await {
        Ok(r) => r,
        Err(_) => (
            false,
            None,
            Some(format!("timed out after {}s", job.timeout.as_secs())),
        ),
    };
    let reason = reason.map(|r| job.redactor.apply(&r).into_owned());
    let duration = started.elapsed();
    let tail_lines = match &output {
        Some(o) if !ok => tail(o, &job.redactor),
        _ => Vec::new(),
    };
    job.events.send(Event::StepFinished {
        host: job.label,
        step: job.step,
        outcome: StepOutcome::from_reason(reason.as_deref()),
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
    /// Keep no output tail when it succeeds (see `plan::Step::quiet`).
    quiet: bool,
    name: String,
    script: String,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    /// Send the step's whole output as an `Output` event.
    output: bool,
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
    // Successful steps keep their tail too: `-v` and JSON show it, unless
    // their output is data for shipit.
    let tail_lines = match &output {
        Some(_) if ok && job.steps[i].quiet => Vec::new(),
        Some(o) => tail(o, &job.redactor),
        None => Vec::new(),
    };
    if let (true, Some(o)) = (job.steps[i].output, &output) {
        job.events.send(Event::Output {
            host: job.label.clone(),
            step: job.steps[i].name.clone(),
            stdout: output_lines(&o.stdout_str(), &job.redactor),
            stderr: output_lines(&o.stderr_str(), &job.redactor),
        });
    }
    job.events.send(Event::StepFinished {
        host: job.label.clone(),
        step: job.steps[i].name.clone(),
        outcome: StepOutcome::from_reason(reason.as_deref()),
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
    // When the host last said something, and last answered the question
    // whether it is still there (since it last said something).
    let mut last_heard = Instant::now();
    let mut answered: Option<Instant> = None;
    // The step that the host stopped answering in, if it did.
    let mut silent: Option<usize> = None;
    loop {
        // The step on the host now: a step's end must arrive within its
        // limit (and a little) after it started, or after the host last
        // spoke when its start has not arrived either.
        let current = results.iter().position(|r| r.is_none());
        let deadline = current.map(|i| {
            let due = started[i].unwrap_or(last_heard) + job.steps[i].timeout + ANSWER_GRACE;
            // A host that answered is asked again a while later: its step
            // may end late (KILL after TERM), or the host may go.
            answered.map_or(due, |a| due.max(a + RECHECK))
        });
        let chunk = match deadline {
            Some(at) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(at), rx.recv()).await {
                    Ok(c) => c,
                    Err(_) => {
                        if still_answers(&job.transport).await {
                            answered = Some(Instant::now());
                            continue;
                        }
                        silent = current;
                        break;
                    }
                }
            }
            None => rx.recv().await,
        };
        let Some(chunk) = chunk else { break };
        last_heard = Instant::now();
        answered = None;
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
    if let Some(i) = silent {
        // Nothing more will come from this host: end the local side and
        // close the connection, so the rest of the run (undo, unlock) fails
        // at once on it instead of waiting out each limit again.
        run.abort();
        let _ = job.transport.close().await;
        let reason = format!(
            "timed out after {}s (the host stopped answering)",
            job.steps[i].timeout.as_secs()
        );
        tracing::debug!(host = %job.label, step = %job.steps[i].name, "host stopped answering");
        let duration = started[i].map(|s| s.elapsed()).unwrap_or_default();
        results[i] = Some(finished(&job, i, false, None, Some(reason), duration));
    }
    let outcome = match run.await {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Err(TransportError::Io {
            host: job.label.clone(),
            reason: "the host stopped answering".to_string(),
        }),
        Err(e) => Err(TransportError::Io {
            host: job.label.clone(),
            reason: format!("internal error: {e}"),
        }),
    };
    // Stopped by the run's interrupt before a step: the steps not reached
    // did not run, so they stay without a result (skipped, not failed).
    let stopped = matches!(&outcome, Ok(out) if out.status == Some(chain::STOPPED_STATUS));
    // The first step without a result is where the chain broke off, if it
    // did: it fails with the transport's reason.
    if let Some(i) = results
        .iter()
        .position(|r| r.is_none())
        .filter(|_| !stopped)
    {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Host, TransportKind};
    use crate::plan::host_step::{self, HostStep};
    use crate::plan::Recipe;
    use crate::transport::local::LocalTransport;
    use std::collections::BTreeMap;

    fn host(dir: &std::path::Path) -> Host {
        Host {
            name: "box".into(),
            roles: vec![],
            transport: TransportKind::Local,
            deploy_to: dir.to_string_lossy().into_owned(),
            user: None,
            port: None,
            vars: Default::default(),
            env: Vec::new(),
        }
    }

    fn step(output: bool) -> HostStep {
        HostStep {
            recipe: Recipe::Exec,
            stage: "staging".into(),
            name: "exec".into(),
            timeout: Duration::from_secs(30),
            output,
        }
    }

    async fn run(plan: &Plan, redactor: Redactor) -> (RunReport, Vec<Event>) {
        let (sink, mut rx) = EventSink::new();
        let (_tx, shutdown) = watch::channel(false);
        let t: Arc<dyn Transport> = Arc::new(LocalTransport::new("box"));
        let ex = Executor::new(
            vec![Some(t.clone())],
            t,
            HashMap::new(),
            sink,
            redactor,
            4,
            shutdown,
        );
        let report = ex.run(plan, |_| true, 0).await;
        drop(ex);
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (report, events)
    }

    #[test]
    fn output_lines_are_redacted_and_trimmed() {
        let env: BTreeMap<String, String> =
            [("API_TOKEN".to_string(), "s3cr3t".to_string())].into();
        let r = Redactor::for_env(&[], &env);
        assert_eq!(
            output_lines("a s3cr3t b\n\nc\n\n", &r),
            vec!["a [redacted] b", "", "c"]
        );
    }

    #[tokio::test]
    async fn a_step_whose_output_is_the_point_sends_it_before_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let h = host(dir.path());
        let env: BTreeMap<String, String> =
            [("API_TOKEN".to_string(), "s3cr3t".to_string())].into();
        let plan = host_step::on_every_host(&step(true), &[&h], |_| {
            "echo hello; echo 'oops s3cr3t' >&2; exit 3".into()
        });
        let (report, events) = run(&plan, Redactor::for_env(&[], &env)).await;
        assert!(!report.results[0].as_ref().unwrap().ok);
        let kinds: Vec<&Event> = events
            .iter()
            .filter(|e| !matches!(e, Event::StepStarted { .. }))
            .collect();
        assert_eq!(
            kinds[0],
            &Event::Output {
                host: "box".into(),
                step: "exec".into(),
                stdout: vec!["hello".into()],
                stderr: vec!["oops [redacted]".into()],
            }
        );
        assert!(
            matches!(kinds[1], Event::StepFinished { outcome: StepOutcome::Failed(why), .. } if why == "exit 3"),
            "{kinds:?}"
        );

        // Without `output`, no Output event.
        let plan = host_step::on_every_host(&step(false), &[&h], |_| "echo hi".into());
        let (report, events) = run(&plan, Redactor::default()).await;
        assert!(report.results[0].as_ref().unwrap().ok);
        assert!(!events.iter().any(|e| matches!(e, Event::Output { .. })));
    }

    #[test]
    fn plans_without_a_release_have_no_stop_flag() {
        let h = host(std::path::Path::new("/srv/app"));
        let mut plan = host_step::on_every_host(&step(false), &[&h], |_| "true".into());
        assert_eq!(stop_flag(&plan, 0), None);
        plan.release.id = "20261124T190102Z".into();
        assert_eq!(stop_flag(&plan, 0), None, "only a deploy stops half-way");
        plan.recipe = crate::plan::Recipe::Deploy;
        assert_eq!(
            stop_flag(&plan, 0).as_deref(),
            Some("/srv/app/.shipit/stop-20261124T190102Z")
        );
    }
}
