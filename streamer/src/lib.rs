//! Placeholder until its issue lands: the long-lived streamer.
