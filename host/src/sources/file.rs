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
/// nothing more buffered (the next read would wait). Lines are cut straight out of the reader's
/// buffer into the batch: each byte is copied once (a line split across two reads twice).
fn read_lines<R: Read>(mut reader: BufReader<R>, tx: &SourceSender, flush_when_drained: bool) -> anyhow::Result<()> {
    let mut batch = RecordBatch::with_capacity(BATCH_RECORDS, BATCH_RECORDS * 256);
    // The start of a line whose end is not read yet.
    let mut partial = Vec::new();
    // Counted per batch, not per line: one shared counter update per 4,096 records.
    let mut read = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let len = buf.len();
        read += len as u64;
        let mut rest = buf;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, after) = (&rest[..nl], &rest[nl + 1..]);
            rest = after;
            if partial.is_empty() {
                push_line(&mut batch, line);
            } else {
                partial.extend_from_slice(line);
                push_line(&mut batch, &partial);
                partial.clear();
            }
            if batch.len() >= BATCH_RECORDS && !send(&mut batch, tx, &mut read) {
                return Ok(()); // the pipeline stopped
            }
        }
        partial.extend_from_slice(rest);
        reader.consume(len);
        if flush_when_drained && !batch.is_empty() && !send(&mut batch, tx, &mut read) {
            return Ok(());
        }
    }
    // A last line without a newline.
    push_line(&mut batch, &partial);
    tx.backlog().add_input_read(read);
    if !batch.is_empty() {
        let _ = tx.blocking_send(SourceMessage::Records(batch));
    }
    Ok(())
}

/// Adds one line, without its `\r\n` or `\n`, unless it is blank.
#[inline]
fn push_line(batch: &mut RecordBatch, line: &[u8]) {
    let rec = line.strip_suffix(b"\r").unwrap_or(line);
    if !rec.iter().all(u8::is_ascii_whitespace) {
        batch.push(rec);
    }
}

/// Sends `batch` (replaced by an empty one); false once the pipeline stopped.
fn send(batch: &mut RecordBatch, tx: &SourceSender, read: &mut u64) -> bool {
    let mut full = std::mem::replace(batch, RecordBatch::with_capacity(BATCH_RECORDS, BATCH_RECORDS * 256));
    tx.backlog().add_input_read(std::mem::take(read));
    super::parse_if_pipeline_behind(&mut full, tx);
    tx.blocking_send(SourceMessage::Records(full)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input` as the source sends it, read through a `capacity`-byte buffer.
    fn lines_read(input: &[u8], capacity: usize) -> Vec<Vec<u8>> {
        let (tx, mut rx) = super::super::channel(1024);
        read_lines(BufReader::with_capacity(capacity, input), &tx, false).unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Some(SourceMessage::Records(b)) = rx.rx.blocking_recv() {
            out.extend(b.iter().map(<[u8]>::to_vec));
        }
        out
    }

    #[test]
    fn lines_split_across_reads_come_out_whole() {
        let input = b"{\"a\":1}\r\n\n  \n{\"b\":22}\n{\"c\":333}\r\n{\"last\":4}";
        let want: Vec<Vec<u8>> = [&b"{\"a\":1}"[..], b"{\"b\":22}", b"{\"c\":333}", b"{\"last\":4}"].map(<[u8]>::to_vec).to_vec();
        for capacity in [1, 2, 3, 7, 8, 9, 64] {
            assert_eq!(lines_read(input, capacity), want, "buffer of {capacity} bytes");
        }
        assert!(lines_read(b"", 8).is_empty());
        assert!(lines_read(b"\n\r\n \n", 8).is_empty());
    }
}
