package aws

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

type queue struct {
	seq  int
	msgs []*message
}

type message struct {
	id, body  string
	receipt   string // of the latest receive; "" before the first
	visibleAt time.Time
	received  int
}

// CreateQueue makes a queue and returns its URL.
func (s *Server) CreateQueue(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sqs[name] == nil {
		s.sqs[name] = &queue{}
	}
	return s.URL + "/" + DefaultAccount + "/" + name
}

// SendMessage enqueues a message body, creating the queue if need be.
func (s *Server) SendMessage(queueName, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.sqs[queueName]
	if q == nil {
		q = &queue{}
		s.sqs[queueName] = q
	}
	q.seq++
	q.msgs = append(q.msgs, &message{id: fmt.Sprintf("msg-%d", q.seq), body: body})
}

// QueueLen is how many messages the queue holds, in flight or not.
func (s *Server) QueueLen(queueName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.sqs[queueName]; q != nil {
		return len(q.msgs)
	}
	return 0
}

// ReceiveCounts returns how often each message left in the queue was
// received, by message id.
func (s *Server) ReceiveCounts(queueName string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	q := s.sqs[queueName]
	if q == nil {
		return out
	}
	for _, m := range q.msgs {
		out[m.id] = m.received
	}
	return out
}

func (s *Server) sqsCall(c *call, body []byte) {
	var in struct {
		QueueUrl            string
		MaxNumberOfMessages int
		VisibilityTimeout   *int
		WaitTimeSeconds     int
		ReceiptHandle       string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		c.fail(http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	name := in.QueueUrl[strings.LastIndexByte(in.QueueUrl, '/')+1:]
	s.mu.Lock()
	q := s.sqs[name]
	s.mu.Unlock()
	if q == nil {
		c.fail(http.StatusBadRequest, "QueueDoesNotExist", name)
		return
	}
	switch c.op {
	case "SQS.ReceiveMessage":
		s.receive(c, q, in.MaxNumberOfMessages, in.VisibilityTimeout, in.WaitTimeSeconds)
	case "SQS.DeleteMessage":
		s.mu.Lock()
		i := q.find(in.ReceiptHandle)
		if i >= 0 {
			q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
		}
		s.mu.Unlock()
		if i < 0 {
			c.fail(http.StatusBadRequest, "ReceiptHandleIsInvalid", "unknown receipt handle")
			return
		}
		c.json("application/x-amz-json-1.0", struct{}{})
	case "SQS.ChangeMessageVisibility":
		s.mu.Lock()
		i := q.find(in.ReceiptHandle)
		ok := i >= 0 && q.msgs[i].visibleAt.After(s.now())
		if ok && in.VisibilityTimeout != nil {
			q.msgs[i].visibleAt = s.now().Add(time.Duration(*in.VisibilityTimeout) * time.Second)
		}
		s.mu.Unlock()
		if !ok {
			c.fail(http.StatusBadRequest, "MessageNotInflight", "message not in flight")
			return
		}
		c.json("application/x-amz-json-1.0", struct{}{})
	default:
		c.fail(http.StatusBadRequest, "UnsupportedOperation", c.op)
	}
}

func (q *queue) find(receipt string) int {
	for i, m := range q.msgs {
		if receipt != "" && m.receipt == receipt {
			return i
		}
	}
	return -1
}

func (s *Server) receive(c *call, q *queue, maxN int, vis *int, wait int) {
	if maxN <= 0 || maxN > 10 {
		maxN = 1
	}
	visibility := 30 * time.Second
	if vis != nil {
		visibility = time.Duration(*vis) * time.Second
	}
	type outMsg struct {
		MessageId, ReceiptHandle, MD5OfBody, Body string
		Attributes                                map[string]string
	}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		var out []outMsg
		s.mu.Lock()
		now := s.now()
		for _, m := range q.msgs {
			if len(out) == maxN {
				break
			}
			if m.visibleAt.After(now) {
				continue
			}
			m.received++
			m.receipt = fmt.Sprintf("%s#%d", m.id, m.received)
			m.visibleAt = now.Add(visibility)
			sum := md5.Sum([]byte(m.body))
			out = append(out, outMsg{MessageId: m.id, ReceiptHandle: m.receipt, MD5OfBody: hex.EncodeToString(sum[:]), Body: m.body,
				Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(m.received)}})
		}
		s.mu.Unlock()
		if len(out) > 0 || !time.Now().Before(deadline) {
			c.json("application/x-amz-json-1.0", map[string]any{"Messages": out})
			return
		}
		select {
		case <-c.r.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}
