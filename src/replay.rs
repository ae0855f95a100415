//! TODO(replay)
