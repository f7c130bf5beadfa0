//! JSONL file source: one event per line, sent in batches, then [`SourceMessage::End`] so the
//! pipeline emits every remaining window (DESIGN §7: a complete offline replay).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::Context;

use super::{SourceMessage, SourceSender};
use crate::event::RecordBatch;

const BATCH_RECORDS: usize = 4096;

/// Reads `path` on a blocking thread and sends its lines. `-` reads standard input.
pub fn spawn_file_source(path: PathBuf, tx: SourceSender) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::task::spawn_blocking(move || {
        if path.as_os_str() == "-" {
            // A pipe may be a live feed: what has arrived is processed without waiting for more.
            read_lines(BufReader::new(std::io::stdin()), &tx, true)
        } else {
            let f = std::fs::File::open(&path).with_context(|| format!("cannot open --events-file {}", path.display()))?;
            // A regular file's size gives replays a progress and a time left (view, /status).
            if let Ok(m) = f.metadata()
                && m.is_file()
            {
                tx.backlog().set_input_size(m.len());
            }
            read_lines(BufReader::with_capacity(1 << 20, f), &tx, false)
        }
        .with_context(|| format!("reading {}", path.display()))?;
        let _ = tx.blocking_send(SourceMessage::End);
        Ok(())
    })
}

/// Sends full batches; with `flush_when_drained`, also whatever was read once the input has
/// nothing more buffered (the next read would wait).
fn read_lines<R: Read>(mut reader: BufReader<R>, tx: &SourceSender, flush_when_drained: bool) -> anyhow::Result<()> {
    let mut batch = RecordBatch::with_capacity(BATCH_RECORDS, BATCH_RECORDS * 256);
    let mut line = Vec::with_capacity(512);
    // Counted per batch, not per line: one shared counter update per 4,096 records.
    let mut read = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        let rec = line.strip_suffix(b"\n").unwrap_or(&line);
        let rec = rec.strip_suffix(b"\r").unwrap_or(rec);
        if rec.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        batch.push(rec);
        if batch.len() >= BATCH_RECORDS || (flush_when_drained && reader.buffer().is_empty()) {
            let mut full = std::mem::replace(&mut batch, RecordBatch::with_capacity(BATCH_RECORDS, BATCH_RECORDS * 256));
            tx.backlog().add_input_read(std::mem::take(&mut read));
            super::parse_if_pipeline_behind(&mut full, tx);
            if tx.blocking_send(SourceMessage::Records(full)).is_err() {
                return Ok(()); // the pipeline stopped
            }
        }
    }
    tx.backlog().add_input_read(read);
    if !batch.is_empty() {
        let _ = tx.blocking_send(SourceMessage::Records(batch));
    }
    Ok(())
}
