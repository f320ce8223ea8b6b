// Package pipeline runs one loop per source stream:
//
//	poll → normalize → correlate → publish → (later) save cursor
//
// Delivery contract. A page's cursor is saved only after the stream has
// acknowledged every message built from that page, and only once
// CheckpointDelay (the server's fsync interval) has passed since the last
// of those acks, so neither a crash nor a power cut can leave a saved cursor
// ahead of data on disk. Saves are deferred, not waited for: the loop keeps
// polling while older cursors ripen, and saves the newest ripe one. After a
// restart the loop resumes from the saved cursor and re-publishes whatever
// followed it; events carry deterministic ids, so the stream's duplicate
// window drops the repeats. Delivery is therefore at least once into the
// stream and exactly once in it.
//
// Failures never skip data: a failed poll, publish or save is retried on the
// same cursor with capped exponential backoff and jitter, forever, until it
// succeeds or the loop is stopped. A record that cannot be normalized is not
// a failure of the page: it is published unchanged to
// audit.deadletter.<cloud>, with the reason in the Trailkeeper-Error header,
// and the page goes on.
//
// Stopping. When Run's context ends, no new page is polled. The page in
// flight gets ShutdownTimeout to be published and its cursor saved; past
// that it is abandoned unsaved, and will be polled again at the next start.
package pipeline
