// Package lease holds the queue messages of pages in flight (SQS receipt
// handles, Pub/Sub ack ids): each page's messages are kept invisible to
// other readers by a heartbeat until the page is committed (then they are
// deleted or acknowledged) or the pipeline stops (then they come back).
package lease

import (
	"context"
	"sync"
	"time"
)

// Pages are the pages in flight of one queue reader.
type Pages struct {
	// Every is the heartbeat period: half the visibility or ack deadline.
	Every time.Duration
	// Extend renews the lease of ids; an error is only logged by OnError.
	Extend  func(ctx context.Context, ids []string) error
	OnError func(error)

	mu sync.Mutex
	m  map[string]*page // page cursor → its messages
	n  int
}

type page struct {
	ids  []string
	stop context.CancelFunc
	done chan struct{}
}

// Hold keeps ids leased under the page cursor next until Release, or until
// ctx (the pipeline's) ends.
func (p *Pages) Hold(ctx context.Context, next []byte, ids []string) {
	hb, stop := context.WithCancel(context.WithoutCancel(ctx))
	pg := &page{ids: ids, stop: stop, done: make(chan struct{})}
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]*page{}
	}
	p.m[string(next)] = pg
	p.n += len(ids)
	every := p.Every
	p.mu.Unlock()
	go func() {
		defer close(pg.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-hb.Done():
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := p.Extend(hb, ids); err != nil && hb.Err() == nil && p.OnError != nil {
					p.OnError(err)
				}
			}
		}
	}()
}

// Release stops the page's heartbeat and returns its ids (none for a page
// not held).
func (p *Pages) Release(next []byte) []string {
	p.mu.Lock()
	pg := p.m[string(next)]
	delete(p.m, string(next))
	if pg != nil {
		p.n -= len(pg.ids)
	}
	p.mu.Unlock()
	if pg == nil {
		return nil
	}
	pg.stop()
	<-pg.done
	return pg.ids
}

// ReleaseAll releases every page and returns their ids.
func (p *Pages) ReleaseAll() [][]string {
	p.mu.Lock()
	keys := make([]string, 0, len(p.m))
	for k := range p.m {
		keys = append(keys, k)
	}
	p.mu.Unlock()
	var out [][]string
	for _, k := range keys {
		if ids := p.Release([]byte(k)); ids != nil {
			out = append(out, ids)
		}
	}
	return out
}

// Outstanding is how many messages are held.
func (p *Pages) Outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
