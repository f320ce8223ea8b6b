package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trailkeeper/trailkeeper/sink/worm"
)

func keygenCmd() *cobra.Command {
	var out, name string
	c := &cobra.Command{
		Use:   "keygen --out FILE [--name ORIGIN]",
		Short: "Create the archive's Ed25519 signing key (FILE, mode 0600) and print its verifier key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			skey, vkey, err := worm.GenerateKey(name)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err // never overwrite a key
			}
			if _, err := fmt.Fprintln(f, skey); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), vkey)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "file for the signing key (created, never overwritten)")
	c.Flags().StringVar(&name, "name", worm.DefaultOrigin, "the log's name (origin of its checkpoints)")
	_ = c.MarkFlagRequired("out")
	return c
}

// verifierKey reads a verifier key given as the key itself or a file.
func verifierKey(arg string) (string, error) {
	if b, err := os.ReadFile(arg); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if strings.Count(arg, "+") >= 2 {
		return arg, nil
	}
	return "", fmt.Errorf("--key %q is neither a verifier key nor a file holding one", arg)
}

// archiveStore opens --archive: a folder, or s3://bucket/prefix (AWS
// default credentials; AWS_ENDPOINT_URL_S3 for S3-compatible servers).
func archiveStore(ctx context.Context, arg string) (worm.Store, error) {
	if rest, ok := strings.CutPrefix(arg, "s3://"); ok {
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return nil, errors.New("--archive s3://BUCKET[/PREFIX]")
		}
		return worm.NewS3Store(ctx, worm.S3Settings{Bucket: bucket, Prefix: prefix, EndpointURL: os.Getenv("AWS_ENDPOINT_URL_S3")})
	}
	if fi, err := os.Stat(arg); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("--archive %s: not a folder", arg)
	}
	return worm.DirStore{Root: arg}, nil
}

func verifyCmd() *cobra.Command {
	var archive, key, anchor, proof string
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify --archive DIR|s3://BUCKET/PREFIX --key PUBKEY [--anchor FILE] [--json] | verify --proof FILE --key PUBKEY",
		Short: "Check an archive offline (signatures, chain, hashes, Merkle roots), or one inclusion proof",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vkey, err := verifierKey(key)
			if err != nil {
				return err
			}
			ver, err := worm.ParseVerifier(vkey)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			out := cmd.OutOrStdout()
			if proof != "" {
				b, err := os.ReadFile(proof)
				if err != nil {
					return err
				}
				// A proof from prove, or an event from show --json (or
				// the API's /v1/events/{uid}) that carries one.
				var v struct {
					worm.Proof
					Nested *worm.Proof `json:"archive_proof"`
				}
				if err := json.Unmarshal(b, &v); err != nil {
					return fmt.Errorf("%s: %w", proof, err)
				}
				p := v.Proof
				if v.Nested != nil {
					p = *v.Nested
				}
				if err := worm.CheckProof(p, ver, ""); err != nil {
					return err
				}
				fmt.Fprintf(out, "proof holds: leaf %d is in the log of %d leaves that %s signs\n", p.Leaf, p.TreeSize, ver.Name())
				return nil
			}
			st, err := archiveStore(cmd.Context(), archive)
			if err != nil {
				return err
			}
			o := worm.VerifyOptions{Verifier: ver}
			if anchor != "" {
				if o.Anchor, err = os.ReadFile(anchor); err != nil {
					return err
				}
			}
			if !asJSON {
				o.OnFinding = func(f worm.Finding) { fmt.Fprintln(out, f) }
			}
			r, err := worm.Verify(cmd.Context(), st, o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(struct {
					OK bool `json:"ok"`
					worm.Report
				}{r.OK(), r})
			} else {
				fmt.Fprintf(out, "%d segments, %d leaves, %d checkpoints, newest signed tree %d: %d findings\n", r.Segments, r.Leaves, r.Checkpoints, r.TreeSize, len(r.Findings))
			}
			if !r.OK() {
				return errSilent
			}
			return nil
		},
	}
	c.Flags().StringVar(&archive, "archive", "", "the archive folder")
	c.Flags().StringVar(&key, "key", "", "verifier key, or a file holding it")
	c.Flags().StringVar(&anchor, "anchor", "", "a checkpoint kept outside the archive, which it must contain")
	c.Flags().StringVar(&proof, "proof", "", "check this proof (from prove, or show --json) instead of an archive")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON report")
	_ = c.MarkFlagRequired("key")
	return c
}

func proveCmd() *cobra.Command {
	var archive, uid string
	c := &cobra.Command{
		Use:   "prove --archive DIR|s3://BUCKET/PREFIX --uid EVENT_UID",
		Short: "Print an event, its leaf index and an inclusion proof against the newest checkpoint (JSON, for verify --proof)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := archiveStore(cmd.Context(), archive)
			if err != nil {
				return err
			}
			p, err := worm.Prove(cmd.Context(), st, uid)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(p)
		},
	}
	c.Flags().StringVar(&archive, "archive", "", "the archive folder")
	c.Flags().StringVar(&uid, "uid", "", "the event's metadata.uid")
	_ = c.MarkFlagRequired("archive")
	_ = c.MarkFlagRequired("uid")
	return c
}
