//! Calling a handler: one function used by live calls and by test cases alike, so a case proves
//! exactly what a call will do.

use std::time::Instant;

use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope};

use super::engine::with_deadline_at;
use super::set::{locate, ScriptSet};
use super::Limits;
use crate::domain::Decision;

/// A handler that failed: where, and why. `location` is `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct RunError {
    pub location: String,
    pub message: String,
    /// What kind of failure, for the strike counts.
    pub kind: Failure,
    /// Where in the file: `line:column` of the statement where the script was stopped or failed
    /// when Rhai gives it, else the handler's name.
    pub at: String,
}

impl RunError {
    /// A failure of the host's own checks (no position in the script).
    pub fn new(location: String, message: String) -> Self {
        RunError { location, message, kind: Failure::Error, at: String::new() }
    }
}

/// The kinds of failure a handler run is counted as (`/metrics`,
/// `privnum_script_strikes_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// Stopped by its deadline.
    Deadline,
    /// Stopped by another sandbox limit (operations, call depth, a string, array or map size).
    Limit,
    /// Failed (a runtime error, a value of the wrong type) or decided what the platform forbids.
    Error,
    /// Not answered in time: it waited in the pool's queue, or ran past its deadline without
    /// being stopped, and the caller stopped waiting.
    Late,
    /// Not run: its queue in the script pool was full.
    Refused,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Deadline => "deadline",
            Failure::Limit => "limit",
            Failure::Error => "error",
            Failure::Late => "late",
            Failure::Refused => "refused",
        }
    }

    /// The sandbox stopped it: it ran as long as it was let, so its input is worth keeping apart.
    pub fn stopped(self) -> bool {
        matches!(self, Failure::Deadline | Failure::Limit)
    }
}

/// What a handler must return, and how to say so when it does not.
pub trait HandlerOutput: Clone + Send + Sync + 'static {
    const EXPECTED: &'static str;
}

impl HandlerOutput for Decision {
    const EXPECTED: &'static str = "a Decision (use connect(…) or release(…))";
}

/// A release handler returns a `stateCode`.
impl HandlerOutput for i64 {
    const EXPECTED: &'static str = "a state code (an integer such as state::INVALID_AXB_CALL)";
}

/// Runs `function(input)` from `file` of `set` within the limits' deadline.
pub fn call_handler<I: Clone + Send + Sync + 'static, O: HandlerOutput>(
    engine: &Engine,
    set: &ScriptSet,
    file: &str,
    function: &str,
    input: I,
    limits: &Limits,
) -> Result<O, RunError> {
    call_handler_until(engine, set, file, function, input, limits, Instant::now() + limits.deadline)
}

/// Runs `function(input)` from `file` of `set`, stopping it at `deadline` (the script pool counts
/// a call's deadline from when it was asked for, so time spent queued counts).
pub fn call_handler_until<I: Clone + Send + Sync + 'static, O: HandlerOutput>(
    engine: &Engine,
    set: &ScriptSet,
    file: &str,
    function: &str,
    input: I,
    limits: &Limits,
    deadline: Instant,
) -> Result<O, RunError> {
    let path = set.path_of(file);
    let Some(ast) = set.script(file) else {
        return Err(RunError {
            at: function.to_owned(),
            ..RunError::new(path.display().to_string(), "no such script in this version".into())
        });
    };
    // Handlers are functions: the top level of the file does not run per call.
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
    let result = with_deadline_at(deadline, || {
        engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), ast, function, (input,))
    });
    match result {
        Ok(value) => {
            let type_name = value.type_name().to_owned();
            value.try_cast::<O>().ok_or_else(|| RunError {
                at: function.to_owned(),
                ..RunError::new(
                    path.display().to_string(),
                    format!("{function} returned {type_name}, not {}", O::EXPECTED),
                )
            })
        }
        Err(err) => Err(RunError {
            location: locate(&path, err.position()),
            message: describe(&err, limits),
            kind: failure_of(&err),
            at: line_column(innermost(&err).position()).unwrap_or_else(|| function.to_owned()),
        }),
    }
}

/// The error inside any function calls it passed through: where the script really stopped.
fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => innermost(inner),
        other => other,
    }
}

fn failure_of(err: &EvalAltResult) -> Failure {
    match innermost(err) {
        EvalAltResult::ErrorTerminated(..) => Failure::Deadline,
        EvalAltResult::ErrorTooManyOperations(..)
        | EvalAltResult::ErrorStackOverflow(..)
        | EvalAltResult::ErrorDataTooLarge(..) => Failure::Limit,
        _ => Failure::Error,
    }
}

fn line_column(position: Position) -> Option<String> {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => Some(format!("{line}:{column}")),
        (Some(line), None) => Some(line.to_string()),
        _ => None,
    }
}

fn describe(err: &EvalAltResult, limits: &Limits) -> String {
    match err {
        EvalAltResult::ErrorTerminated(..) => format!("stopped: ran past its deadline of {:?}", limits.deadline),
        EvalAltResult::ErrorTooManyOperations(..) => {
            format!("stopped: more than {} operations", limits.max_operations)
        }
        EvalAltResult::ErrorStackOverflow(..) => {
            format!("stopped: calls nested deeper than {}", limits.max_call_levels)
        }
        EvalAltResult::ErrorDataTooLarge(what, ..) => format!("stopped: {what} grew past the sandbox limit"),
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => format!("in {name}: {}", describe(inner, limits)),
        other => {
            // Rhai appends "(line L, position C)"; the location already says it.
            let text = other.to_string();
            text.split(" (line ").next().unwrap_or(&text).to_owned()
        }
    }
}
