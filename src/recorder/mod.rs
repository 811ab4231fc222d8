//! The recorder: the only writer of recordings/, in asciicast v2.
