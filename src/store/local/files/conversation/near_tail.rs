//! Slotting a late event in near the end of a conversation file, in place.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::event::MessagingEvent;
use super::format::{TAIL, render_append, sort_chronologically};
use crate::store::StoreError;

/// How far back from the end an older event is slotted in place; beyond, the file is rewritten.
/// The last 4 KiB (a dozen events) are looked at first: that is nearly always enough.
const NEAR_TAIL_WINDOWS: [u64; 2] = [4 * 1024, 64 * 1024];

/// Writes `fresh` (sorted) into a line-format file of `len` bytes after the last event not
/// newer than the oldest of them, re-writing the events after that point behind them: one
/// read of the file's end and one write, instead of a rewrite of the whole file. Returns the
/// open file and the bytes written (as [`render_append`] makes them: the new events and the
/// moved ones); `None` when the place is not within the last 64 KiB.
///
/// Only for a journaled store: a crash could tear the moved events, which were acknowledged
/// before, and it is their copy in this write's journal record that brings them back.
pub(super) fn insert_near_tail(
    path: &Path,
    len: u64,
    fresh: &[MessagingEvent],
) -> Result<Option<(File, Vec<u8>)>, StoreError> {
    let Some(oldest) = fresh.iter().filter_map(MessagingEvent::timestamp).min() else {
        return Ok(None);
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(StoreError::io("open", path))?;
    let mut place = None;
    for window in NEAR_TAIL_WINDOWS {
        let start = len.saturating_sub(window);
        let mut chunk = vec![0; (len - start) as usize];
        file.read_exact_at(&mut chunk, start)
            .map_err(StoreError::io("read", path))?;
        place = find_place(&chunk, oldest).map(|(at, displaced)| (start + at, displaced));
        if place.is_some() || start == 0 {
            break;
        }
    }
    let Some((at, displaced)) = place else {
        return Ok(None);
    };
    let mut merged = displaced;
    merged.extend(fresh.iter().cloned());
    sort_chronologically(&mut merged);
    let bytes = render_append(&merged);
    file.write_all_at(&bytes, at)
        .map_err(StoreError::io("write", path))?;
    let new_len = at + bytes.len() as u64;
    if new_len < len {
        file.set_len(new_len)
            .map_err(StoreError::io("truncate", path))?;
    }
    Ok(Some((file, bytes)))
}

/// In the last bytes of a line-format file, where events newer than `oldest` begin: the
/// offset (in `chunk`) right after the last event that stays, and the events after it, in
/// order. `None` when that place is not inside `chunk`, or the file does not end as it should.
fn find_place(chunk: &[u8], oldest: i64) -> Option<(u64, Vec<MessagingEvent>)> {
    let body = chunk.strip_suffix(TAIL)?;
    // Walk back line by line; the first line of the chunk may be cut, so it never counts.
    let mut displaced = Vec::new();
    let mut end = body.len();
    loop {
        let newline = body[..end].iter().rposition(|&b| b == b'\n')?;
        let event = MessagingEvent::from_json(&body[newline + 1..end])?;
        match event.timestamp() {
            Some(ts) if ts > oldest => displaced.push(event),
            // The last event that stays: the new ones go right after it.
            _ => break,
        }
        end = newline.checked_sub(1)?; // before the `,` that ends the previous line
        if body[end] != b',' {
            return None; // reached `[`: older than everything, a whole rewrite
        }
    }
    displaced.reverse();
    Some((end as u64, displaced))
}
