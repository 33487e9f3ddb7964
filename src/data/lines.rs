//! Line numbers for CSV errors. The csv crate counts lines one short in CRLF files (the
//! EPITOME release uses CRLF), so lines are derived from byte offsets instead: a reader
//! wrapper notes where each newline is, and forgets the ones behind the current record, so
//! memory stays bounded while streaming.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::rc::Rc;

#[derive(Default)]
struct Newlines {
    behind: u64,
    ahead: VecDeque<u64>,
    read: u64,
    quotes: QuoteState,
    /// Newlines read so far, for the line a quoted field opens on.
    lines: u64,
}

/// Where the bytes read so far leave a CSV field, in the csv crate's default dialect (a quote
/// opens a quoted field only at the start of a field; `""` inside one is a quote). The csv
/// crate reads a quote left open to the end of the file as one field holding every row after
/// it, without an error; this notices.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum QuoteState {
    #[default]
    FieldStart,
    Unquoted,
    /// Inside a quoted field that opened on this 1-based line.
    Quoted(u64),
    /// A quote inside a quoted field: it closes the field, or a second one follows.
    QuoteInQuoted(u64),
}

impl QuoteState {
    fn next(self, b: u8, line: u64) -> Self {
        use QuoteState::*;
        match (self, b) {
            (FieldStart, b'"') => Quoted(line),
            (FieldStart | Unquoted, b',' | b'\n' | b'\r') => FieldStart,
            (FieldStart | Unquoted, _) => Unquoted,
            (Quoted(l), b'"') => QuoteInQuoted(l),
            (Quoted(l), _) => Quoted(l),
            (QuoteInQuoted(l), b'"') => Quoted(l),
            (QuoteInQuoted(_), b',' | b'\n' | b'\r') => FieldStart,
            (QuoteInQuoted(_), _) => Unquoted,
        }
    }
}

/// Shared view of where the newlines seen so far are.
#[derive(Clone, Default)]
pub struct LineTracker(Rc<RefCell<Newlines>>);

impl LineTracker {
    /// The 1-based line of a record starting at `byte` (csv reports a CRLF record as starting at
    /// the `\n` that ends the line before it). Queries must not go backwards in the file.
    pub fn line_of(&self, byte: u64) -> u64 {
        let mut n = self.0.borrow_mut();
        while n.ahead.front().is_some_and(|&b| b <= byte) {
            n.ahead.pop_front();
            n.behind += 1;
        }
        n.behind + 1
    }

    /// The line of a quoted field still open where reading stopped: at the end of the file, a
    /// quote that never closes.
    pub fn open_quote(&self) -> Option<u64> {
        match self.0.borrow().quotes {
            QuoteState::Quoted(line) => Some(line),
            _ => None,
        }
    }

    /// Bytes read from the file so far, for progress bars.
    pub fn bytes_read(&self) -> u64 {
        self.0.borrow().read
    }

    pub fn reader<R: Read>(&self, inner: R) -> TrackingReader<R> {
        TrackingReader {
            inner,
            tracker: self.clone(),
        }
    }
}

pub struct TrackingReader<R> {
    inner: R,
    tracker: LineTracker,
}

impl<R: Read> Read for TrackingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut t = self.tracker.0.borrow_mut();
        let base = t.read;
        for (i, &b) in buf[..n].iter().enumerate() {
            t.quotes = t.quotes.next(b, t.lines + 1);
            if b == b'\n' {
                t.ahead.push_back(base + i as u64);
                t.lines += 1;
            }
        }
        t.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_crlf_records_are_exact() {
        let data = b"a,b\r\n1,\"x\r\ny\"\r\n3,4\r\n";
        let tracker = LineTracker::default();
        let mut reader = csv::Reader::from_reader(tracker.reader(&data[..]));
        let lines: Vec<u64> = reader
            .byte_records()
            .map(|r| tracker.line_of(r.unwrap().position().unwrap().byte()))
            .collect();
        assert_eq!(lines, vec![2, 4]);
        assert_eq!(tracker.open_quote(), None);
    }

    #[test]
    fn a_quote_left_open_is_found_with_its_line() {
        let read_all = |data: &[u8]| {
            let tracker = LineTracker::default();
            let mut reader = csv::Reader::from_reader(tracker.reader(data));
            for r in reader.byte_records() {
                r.unwrap();
            }
            tracker.open_quote()
        };
        assert_eq!(read_all(b"a,b\n1,\"x\n2,y\n3,z\n"), Some(2));
        // Closed, escaped, and literal quotes are no open quote.
        assert_eq!(
            read_all(b"a,b\n1,\"x \"\"q\"\" y\"\n2,5'11\"\n\"3\",\"\"\n"),
            None
        );
    }
}
