//! Fan-out of emitted results and rejected events to the configured sinks.

use crate::cli::{RunArgs, ViewMode};
use crate::output::Output;
use crate::pipeline::{PipelineStats, Reject};
use crate::sinks::jsonl::JsonlSink;
use crate::sinks::terminal::TerminalView;
use crate::sources::RecordBatch;

pub struct Outputs {
    jsonl: Option<JsonlSink>,
    view: Option<TerminalView>,
}

impl Outputs {
    pub async fn open(args: &RunArgs, view: ViewMode) -> anyhow::Result<Self> {
        let jsonl = args.jsonl_out.as_deref().map(JsonlSink::create).transpose()?;
        let view = match view {
            ViewMode::Off => None,
            ViewMode::Live => Some(TerminalView::new(true)),
            ViewMode::Log => Some(TerminalView::new(false)),
        };
        Ok(Self { jsonl, view })
    }

    pub async fn write(&mut self, out: &[Output]) -> anyhow::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        if let Some(j) = &mut self.jsonl {
            j.write(out)?;
        }
        if let Some(v) = &mut self.view {
            v.record(out);
        }
        Ok(())
    }

    pub async fn dead_letters(&mut self, batch: &RecordBatch, rejects: &[Reject]) -> anyhow::Result<()> {
        for r in rejects {
            tracing::warn!(reason = %r.reason, "event rejected");
        }
        let _ = batch;
        Ok(())
    }

    pub fn tick(&mut self, stats: &PipelineStats) {
        if let Some(v) = &mut self.view {
            v.draw(stats);
        }
    }

    pub async fn close(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
