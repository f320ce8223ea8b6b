// Package normalize owns record formats: it turns one raw audit record of any
// supported cloud format into one OCSF event.
//
// Collectors own transport and hand raw bytes here together with an optional
// format hint; the same CloudTrail record therefore maps the same way whether
// it arrived through LookupEvents, an S3 log file or an exported file.
//
// Contract of Normalize: it is pure (same input, same output, apart from
// metadata.processed_time), safe for concurrent use, and never keeps a
// reference to the input slice. A non-nil error means the record cannot be
// mapped; the caller keeps the raw bytes on the dead-letter subject.
package normalize
