//! The HTTP/1.1 answer as it arrives: the head checked, the chunked framing undone in place.

use tokio::sync::oneshot;

use super::{MAX_HEAD, Reader};

/// Whether the response goes on.
pub(super) enum Progress {
    More,
    Ended,
}

/// The HTTP/1.1 response, as far as it has arrived.
pub(super) enum Http {
    /// The head so far.
    Head(Vec<u8>),
    /// A chunked body: where in the chunk framing the next byte is.
    Chunked(Chunk),
    /// A body that lasts until the connection closes.
    UntilClose,
}

#[derive(Clone, Copy)]
pub(super) enum Chunk {
    /// Reading a chunk-size line (hex digits, then an extension to ignore).
    Size { value: usize, extension: bool },
    /// This many bytes of chunk data are still to come.
    Data(usize),
    /// The CRLF after chunk data.
    End,
}

impl Http {
    /// Feeds bytes of the response: the head is checked, the body's payload goes to `reader`.
    pub(super) fn feed(
        &mut self,
        data: &[u8],
        reader: &mut Reader,
        ready: &mut Option<oneshot::Sender<Result<(), String>>>,
    ) -> Result<Progress, String> {
        let body = match self {
            Self::Head(head) => {
                head.extend_from_slice(data);
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    if head.len() > MAX_HEAD {
                        return Err(format!("an answer head longer than {MAX_HEAD} bytes"));
                    }
                    return Ok(Progress::More);
                };
                let verdict = head_framing(&head[..end]);
                if let Some(ready) = ready.take() {
                    let _ = ready.send(verdict.as_ref().map(|_| ()).map_err(Clone::clone));
                }
                let rest = head[end + 4..].to_vec();
                *self = verdict?;
                return if rest.is_empty() {
                    Ok(Progress::More)
                } else {
                    self.feed(&rest, reader, ready)
                };
            }
            Self::UntilClose => {
                reader.chunk(data)?;
                return Ok(Progress::More);
            }
            Self::Chunked(chunk) => chunk,
        };
        let mut input = data;
        let phase = reader.begin();
        while let Some(&byte) = input.first() {
            match body {
                Chunk::Size { value, extension } => {
                    input = &input[1..];
                    match byte {
                        b'\n' if *value == 0 => return Ok(Progress::Ended),
                        b'\n' => *body = Chunk::Data(*value),
                        b'\r' => {}
                        _ if *extension => {}
                        b';' => *extension = true,
                        _ => {
                            let digit = char::from(byte)
                                .to_digit(16)
                                .ok_or_else(|| format!("a bad chunk size byte {byte:#x}"))?;
                            *value = value
                                .checked_mul(16)
                                .and_then(|v| v.checked_add(digit as usize))
                                .ok_or("a chunk size too large")?;
                        }
                    }
                }
                Chunk::Data(left) => {
                    let (payload, rest) = input.split_at((*left).min(input.len()));
                    *left -= payload.len();
                    if *left == 0 {
                        *body = Chunk::End;
                    }
                    reader.lines(payload, phase)?;
                    input = rest;
                }
                Chunk::End => {
                    input = &input[1..];
                    if byte == b'\n' {
                        *body = Chunk::Size {
                            value: 0,
                            extension: false,
                        };
                    }
                }
            }
        }
        Ok(Progress::More)
    }
}

/// Checks an answer head: `200`, `text/event-stream`; says how the body is framed.
fn head_framing(head: &[u8]) -> Result<Http, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {status:?}"));
    }
    let (mut chunked, mut content_type) = (false, String::new());
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-type") {
            value.clone_into(&mut content_type);
        }
    }
    if !content_type.starts_with("text/event-stream") {
        return Err(format!("answered {content_type:?}, not text/event-stream"));
    }
    Ok(if chunked {
        Http::Chunked(Chunk::Size {
            value: 0,
            extension: false,
        })
    } else {
        Http::UntilClose
    })
}
