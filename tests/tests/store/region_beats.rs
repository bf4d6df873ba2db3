//! Each region's beat (`docs/multi-region.md`, "How stale a replica is"): the latest one is kept
//! whatever order the region's streamers put theirs in, and is read back as put.

use std::time::Duration;

use crate::helpers::Harness;
use crate::home_fence::region;

pub async fn a_regions_latest_beat_is_kept_whatever_order_beats_come_in(h: Harness) {
    let (a, b) = (region("a"), region("b"));
    assert_eq!(h.store.last_beat(&a).await.unwrap(), None, "no beat yet");
    let now = h.now();
    let earlier = now.minus(Duration::from_millis(1_500));

    h.store.beat(&a, now).await.unwrap();
    // Act: another streamer of the region, late, puts an older beat.
    h.store.beat(&a, earlier).await.unwrap();
    h.store.beat(&b, earlier).await.unwrap();

    assert_eq!(h.store.last_beat(&a).await.unwrap(), Some(now));
    assert_eq!(h.store.last_beat(&b).await.unwrap(), Some(earlier));
    let later = now.plus(Duration::from_millis(500));
    h.store.beat(&a, later).await.unwrap();
    assert_eq!(h.store.last_beat(&a).await.unwrap(), Some(later));
}
