//! JSON-lines sink (`--jsonl-out`): every emitted result, one object per line, in the DESIGN §6
//! shape. `-` writes to standard output. Clones write to the same file (the pipelines of a
//! host, `--threads`), each call's lines together.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::output::{HotRecord, Output, ProfileRecord, ShadowRecord};

#[derive(Clone)]
pub struct JsonlSink {
    out: Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>,
}

impl JsonlSink {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let w: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            Box::new(std::fs::File::create(path).with_context(|| format!("cannot create --jsonl-out {}", path.display()))?)
        };
        Ok(Self { out: Arc::new(Mutex::new(BufWriter::with_capacity(1 << 16, w))) })
    }

    pub fn write(&mut self, outputs: &[Output]) -> anyhow::Result<()> {
        // Uncontended with one pipeline; with several, held for one output chunk, never per event.
        // A writer that panicked left whole lines at worst: the file is still usable.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        for o in outputs {
            match o {
                // The hot list is the hottest path: serialize it without an intermediate Value.
                Output::Hot(h) => serde_json::to_writer(&mut *out, &HotRecord::from(h))?,
                Output::Profile(p) => serde_json::to_writer(&mut *out, &ProfileRecord::from(p))?,
                Output::EncodedProfile(p) => out.write_all(p.jsonl_line())?,
                Output::Shadow(sh) => serde_json::to_writer(&mut *out, &ShadowRecord::from(sh))?,
                other => serde_json::to_writer(&mut *out, &other.to_json())?,
            }
            out.write_all(b"\n")?;
        }
        // Each call is one pipeline step: make it visible to readers (tail -f, tests) now.
        out.flush()?;
        Ok(())
    }
}
