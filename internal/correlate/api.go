package correlate

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// MaxBody is the largest request body the run API reads.
const MaxBody = 1 << 20

// Handler serves the run registry API under /v1/ (DESIGN §5), every
// request authenticated with `Authorization: Bearer <token>`.
func Handler(reg *Registry, token string, now func() time.Time) http.Handler {
	if now == nil {
		now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/runs", func(w http.ResponseWriter, r *http.Request) {
		var run Run
		if !decode(w, r, &run) {
			return
		}
		if err := run.Validate(); err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		if old, ok := reg.Get(run.Key); ok && old.FinishedAt != nil {
			fail(w, http.StatusConflict, &FieldError{"run_key", "this run is finished"})
			return
		}
		run.FinishedAt, run.Status = nil, "running"
		if err := reg.Put(r.Context(), run); err != nil {
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, map[string]any{"run": run, "token": Token(run.Key), "environment": Environment(run.Key)})
	})
	mux.HandleFunc("POST /v1/runs/{key}/finish", func(w http.ResponseWriter, r *http.Request) {
		run, ok := reg.Get(r.PathValue("key"))
		if !ok {
			fail(w, http.StatusNotFound, &FieldError{"run_key", "no such run"})
			return
		}
		var in struct {
			FinishedAt time.Time `json:"finished_at"`
			Status     string    `json:"status"`
		}
		if !decode(w, r, &in) {
			return
		}
		status, ok := FinishStatus(in.Status)
		if !ok {
			fail(w, http.StatusBadRequest, &FieldError{"status", "succeeded, failed or canceled, or a CI system's word for them (success, failure, errored, canceled, discarded, applied, …)"})
			return
		}
		in.Status = status
		if in.FinishedAt.IsZero() {
			in.FinishedAt = now()
		}
		if in.FinishedAt.Before(run.StartedAt) {
			fail(w, http.StatusBadRequest, &FieldError{"finished_at", "before the run started"})
			return
		}
		run.FinishedAt, run.Status = &in.FinishedAt, in.Status
		if err := reg.Put(r.Context(), run); err != nil {
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, run)
	})
	mux.HandleFunc("POST /v1/state", stateHandler(reg))
	mux.HandleFunc("POST /v1/runs/{key}/plan", runDataHandler(reg, false))
	mux.HandleFunc("POST /v1/runs/{key}/apply-log", runDataHandler(reg, true))
	mux.HandleFunc("GET /v1/runs/{key}", func(w http.ResponseWriter, r *http.Request) {
		run, ok := reg.Get(r.PathValue("key"))
		if !ok {
			fail(w, http.StatusNotFound, &FieldError{"run_key", "no such run"})
			return
		}
		writeJSON(w, run)
	})
	mux.HandleFunc("GET /v1/runs", func(w http.ResponseWriter, r *http.Request) {
		since := time.Time{}
		if s := r.URL.Query().Get("since"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				fail(w, http.StatusBadRequest, &FieldError{"since", "RFC 3339"})
				return
			}
			since = t
		}
		writeJSON(w, map[string]any{"runs": reg.Since(since)})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="trailkeeper"`)
			fail(w, http.StatusUnauthorized, errors.New("a valid bearer token is required"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// decode reads a JSON body into v, strictly, and answers the error itself.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("data after the JSON object")
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", MaxBody))
	case errors.As(err, &typeErr):
		fail(w, http.StatusBadRequest, &FieldError{typeErr.Field, "expected " + typeErr.Type.String()})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		fail(w, http.StatusBadRequest, &FieldError{strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field"})
	case errors.Is(err, io.EOF):
		fail(w, http.StatusBadRequest, errors.New("empty body"))
	default:
		fail(w, http.StatusBadRequest, err)
	}
	return false
}

// readBody reads a size-limited body, answering the error itself.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", MaxBody))
	}
	return b, err
}

func fail(w http.ResponseWriter, status int, err error) {
	body := map[string]string{"error": err.Error()}
	var fe *FieldError
	if errors.As(err, &fe) {
		body["field"], body["error"] = fe.Field, fe.Msg
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeJSON(w http.ResponseWriter, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	_ = json.NewEncoder(w).Encode(v)
}
