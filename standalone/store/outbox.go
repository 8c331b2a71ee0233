package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The outbox holds what must happen after a step is saved and must not be
// lost if the process dies before it happens: today, notifications. It is
// written in the step's own transaction (Record.Outbox), so a step is never
// saved without its messages nor a message without its step, and each
// message stays until its sender calls Done. Sending is at least once: a
// message sent just before a crash is sent again, with the same ID, which
// receivers use to drop the repeat.
//
//	outbox/  big-endian uint64 seq ++ uint32 index -> Message JSON
//	meta/    id -> this file's random ID, part of every message ID
var (
	bOutbox = []byte("outbox")
	kID     = []byte("id")
)

// Message is one outbox entry.
type Message struct {
	// ID is unique across state files: the file's ID, the Commit's
	// sequence number and the message's position in it. Set by Commit.
	ID string `json:"id"`
	// Rollout is the key of the Rollout whose step wrote it.
	Rollout string    `json:"rollout"`
	Time    time.Time `json:"time"`
	// Kind tells the sender how to read Body, e.g. "notification".
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// ErrBadID: Done was given an ID no Commit of this file made.
var ErrBadID = errors.New("not an outbox message ID of this state file")

func outboxKey(seq uint64, i int) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, seq)
	binary.BigEndian.PutUint32(k[8:], uint32(i))
	return k
}

// fileID returns the file's ID, creating it on first use.
func fileID(tx *bolt.Tx) (string, error) {
	meta := tx.Bucket(bMeta)
	if id := meta.Get(kID); id != nil {
		return string(id), nil
	}
	id := strings.ToLower(rand.Text()[:10])
	if err := meta.Put(kID, []byte(id)); err != nil {
		return "", fmt.Errorf("write file id: %w", err)
	}
	return id, nil
}

func encodeOutbox(msgs []Message) error {
	for i, m := range msgs {
		if m.Kind == "" || !json.Valid(m.Body) {
			return fmt.Errorf("%w: outbox message %d needs a kind and a JSON body", ErrInvalid, i)
		}
	}
	return nil
}

func writeOutbox(tx *bolt.Tx, key string, seq uint64, at time.Time, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	id, err := fileID(tx)
	if err != nil {
		return err
	}
	ob := tx.Bucket(bOutbox)
	for i, m := range msgs {
		m.ID = fmt.Sprintf("%s-%d-%d", id, seq, i)
		m.Rollout = key
		if m.Time.IsZero() {
			m.Time = at
		}
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode outbox message: %w", err)
		}
		if err := ob.Put(outboxKey(seq, i), b); err != nil {
			return fmt.Errorf("write outbox message: %w", err)
		}
	}
	return nil
}

// Outbox returns the messages not yet Done, oldest first.
func (s *Store) Outbox() ([]Message, error) {
	var out []Message
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bOutbox).ForEach(func(_, v []byte) error {
			var m Message
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode outbox message: %w", err)
			}
			out = append(out, m)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// Done removes a sent message. Removing one already gone is not an error:
// two senders racing after a restart both end well.
func (s *Store) Done(id string) error {
	file, seq, idx, err := parseMessageID(id)
	if err != nil {
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		if own := tx.Bucket(bMeta).Get(kID); !bytes.Equal(own, []byte(file)) {
			return fmt.Errorf("%w: %q", ErrBadID, id)
		}
		return tx.Bucket(bOutbox).Delete(outboxKey(seq, idx))
	})
	if err != nil {
		return fmt.Errorf("outbox done %s: %w", id, err)
	}
	return nil
}

func parseMessageID(id string) (file string, seq uint64, idx int, err error) {
	parts := strings.Split(id, "-")
	if len(parts) != 3 {
		return "", 0, 0, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	seq, err1 := strconv.ParseUint(parts[1], 10, 64)
	i, err2 := strconv.ParseUint(parts[2], 10, 32)
	if err1 != nil || err2 != nil {
		return "", 0, 0, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	return parts[0], seq, int(i), nil
}
