//! `compress=zlib-stream`: one inflate context for the whole connection.

use flate2::{Decompress, FlushDecompress, Status};

/// The suffix of a complete zlib-stream message (a `Z_SYNC_FLUSH`).
const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Most bytes one inflated message may take; a larger one is a broken stream.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// How far past the limit the output buffer may grow.
const OUTPUT_SLACK: usize = 64 * 1024;

/// Inflates the binary messages of one connection. Discord compresses the whole connection as one
/// stream, so a fresh context per message fails from the second message on.
#[derive(Debug)]
pub(crate) struct Inflater {
    context: Decompress,
    buffer: Vec<u8>,
    output: Vec<u8>,
    max_message: usize,
}

impl Inflater {
    pub(crate) fn new() -> Self {
        Self::with_limit(MAX_MESSAGE)
    }

    /// An inflater refusing messages (compressed or inflated) larger than `max_message` bytes.
    pub(crate) fn with_limit(max_message: usize) -> Self {
        Self {
            context: Decompress::new(true),
            buffer: Vec::new(),
            output: Vec::with_capacity(32 * 1024),
            max_message,
        }
    }

    /// Takes a binary message; returns the inflated payload once a whole message has arrived.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Option<&[u8]>, String> {
        if self.buffer.len() + bytes.len() > self.max_message {
            return Err("a compressed message never ended".to_owned());
        }
        self.buffer.extend_from_slice(bytes);
        if !self.buffer.ends_with(&ZLIB_SUFFIX) {
            return Ok(None);
        }
        self.output.clear();
        let mut offset = 0;
        loop {
            // Checked on every round, and the buffer grown only up to the limit: a doubling
            // buffer would let a decompression bomb take twice the limit before it is noticed.
            if self.output.len() > self.max_message {
                return Err("inflated message too large".to_owned());
            }
            if self.output.capacity() - self.output.len() < 16 * 1024 {
                let room = self.max_message + OUTPUT_SLACK - self.output.len();
                let grow = self.output.capacity().max(64 * 1024).min(room);
                self.output.reserve_exact(grow);
            }
            let (before_in, before_out) = (self.context.total_in(), self.context.total_out());
            let status = self
                .context
                .decompress_vec(
                    &self.buffer[offset..],
                    &mut self.output,
                    FlushDecompress::Sync,
                )
                .map_err(|e| e.to_string())?;
            offset += usize::try_from(self.context.total_in() - before_in).unwrap_or(0);
            let produced = self.context.total_out() - before_out;
            let had_room = self.output.len() < self.output.capacity();
            if status == Status::StreamEnd || (offset >= self.buffer.len() && had_room) {
                break;
            }
            if produced == 0 && had_room {
                return Err("the compressed stream stalled".to_owned());
            }
        }
        if self.output.len() > self.max_message {
            return Err("inflated message too large".to_owned());
        }
        self.buffer.clear();
        Ok(Some(&self.output))
    }

    /// The last message [`Inflater::push`] returned.
    pub(crate) fn last(&self) -> &[u8] {
        &self.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate(context: &mut Compress, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 64);
        context
            .compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn one_context_inflates_every_message_even_when_split() {
        let mut deflater = Compress::new(Compression::default(), true);
        let mut inflater = Inflater::new();
        for i in 0..5 {
            let text = format!(
                r#"{{"op":0,"s":{i},"t":"MESSAGE_CREATE","d":{{"content":"{}"}}}}"#,
                "x".repeat(i * 100)
            );
            let bytes = deflate(&mut deflater, &text);
            let (a, b) = bytes.split_at(bytes.len() / 2);
            assert_eq!(inflater.push(a).unwrap(), None);
            assert_eq!(inflater.push(b).unwrap().unwrap(), text.as_bytes());
        }
    }

    /// A message that inflates past the limit (a decompression bomb: zeros compress about
    /// 1,000 to 1) is refused, and the memory it took stays near the limit; one just under the
    /// limit still inflates.
    #[test]
    fn a_message_inflating_past_the_limit_is_refused_with_bounded_memory() {
        use std::io::Write as _;
        const LIMIT: usize = 4 * 1024 * 1024;
        let compressed = |len: usize| {
            let mut deflater = flate2::write::ZlibEncoder::new(Vec::new(), Compression::best());
            deflater.write_all(&vec![0u8; len]).unwrap();
            // A sync flush, as Discord ends each message.
            deflater.flush().unwrap();
            deflater.get_ref().clone()
        };
        let bomb = compressed(LIMIT + 1);
        assert!(bomb.ends_with(&ZLIB_SUFFIX));
        assert!(bomb.len() < LIMIT / 500, "{} bytes", bomb.len());
        let mut inflater = Inflater::with_limit(LIMIT);
        match inflater.push(&bomb) {
            Err(error) => assert_eq!(error, "inflated message too large"),
            Ok(out) => panic!(
                "inflated {:?} bytes past a limit of {LIMIT}",
                out.map(<[u8]>::len)
            ),
        }
        assert!(
            inflater.output.capacity() <= LIMIT + OUTPUT_SLACK,
            "{} bytes held for a limit of {LIMIT}",
            inflater.output.capacity()
        );
        let mut inflater = Inflater::with_limit(LIMIT);
        let just_under = compressed(LIMIT - 1);
        assert_eq!(
            inflater.push(&just_under).unwrap().map(<[u8]>::len),
            Some(LIMIT - 1)
        );
    }
}
