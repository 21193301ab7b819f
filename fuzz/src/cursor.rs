//! List cursors (`imgsvc_lambda::cursor::CursorCodec`).
//!
//! The first byte picks the mode:
//! - even: the rest is a cursor string from a client. Decoding must refuse it (a client
//!   can't sign), unless it is exactly what `encode` produces for the decoded position.
//! - odd: a position and listing built from the input are encoded; asserts the cursor
//!   decodes back to the same position (iff it fits the 1024-byte limit), is refused for
//!   another user, another album and under another key, and that any single changed byte
//!   and any truncation is refused.

use imgsvc_lambda::cursor::CursorCodec;
use imgsvc_lambda::store::ListPosition;

use crate::input::Input;

const KEY: &[u8] = b"fuzz cursor key";
/// Longest cursor `decode` looks at.
const MAX_CURSOR: usize = 1024;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let codec = CursorCodec::new(KEY);
    if input.byte().is_multiple_of(2) {
        let cursor = String::from_utf8_lossy(input.rest());
        for (user, album) in [("alice", None), ("alice", Some("album-1"))] {
            if let Some(position) = codec.decode(&cursor, user, album) {
                assert_eq!(
                    codec.encode(&position, user, album),
                    cursor,
                    "accepted a cursor we did not sign"
                );
            }
        }
        return;
    }

    let tamper_at = usize::from(input.u16());
    let tamper_with = input.byte().max(1);
    let truncate_at = usize::from(input.u16());
    let position = ListPosition {
        uploaded_at: input.text(),
        id: input.text(),
    };
    let user = Some(input.text())
        .filter(|u| crate::valid_id(u))
        .unwrap_or_else(|| "alice".to_owned());
    let album = Some(input.text()).filter(|a| crate::valid_id(a));
    let album = album.as_deref();

    let cursor = codec.encode(&position, &user, album);
    let decoded = codec.decode(&cursor, &user, album);
    if cursor.len() <= MAX_CURSOR {
        assert_eq!(decoded.as_ref(), Some(&position), "round trip of {cursor}");
    } else {
        assert_eq!(decoded, None, "a cursor over the limit was decoded");
    }
    let other_user = if user == "mallory" { "eve" } else { "mallory" };
    assert_eq!(codec.decode(&cursor, other_user, album), None, "other user");
    let other_album = match album {
        None => Some("album-x"),
        Some(_) => None,
    };
    assert_eq!(
        codec.decode(&cursor, &user, other_album),
        None,
        "other album"
    );
    assert_eq!(
        CursorCodec::new(b"another key").decode(&cursor, &user, album),
        None,
        "other key"
    );

    let mut tampered = cursor.clone().into_bytes();
    let at = tamper_at % tampered.len();
    tampered[at] ^= tamper_with;
    let tampered = String::from_utf8_lossy(&tampered);
    assert_eq!(
        codec.decode(&tampered, &user, album),
        None,
        "byte {at} ^ {tamper_with:#x} of {cursor} was accepted"
    );
    let cut = truncate_at % cursor.len();
    assert_eq!(
        codec.decode(&cursor[..cut], &user, album),
        None,
        "truncated to {cut}"
    );
}
