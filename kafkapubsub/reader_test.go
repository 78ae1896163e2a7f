package kafkapubsub

import (
	"testing"
	"time"
)

// The group settings reach kafka-go's reader: the defaults, and a value set.
func TestReaderGetsTheGroupSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  time.Duration
		want time.Duration
	}{
		{"default", 0, DefaultJoinGroupBackoff},
		{"set", 3 * time.Second, 3 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSubscriber(SubscriberConfig{Brokers: []string{"127.0.0.1:1"}, ConsumerGroup: "g", JoinGroupBackoff: tt.set}, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := s.newReader("topic", s.logger)
			defer r.Close()
			c := r.Config()
			if c.JoinGroupBackoff != tt.want || c.HeartbeatInterval != DefaultHeartbeatInterval ||
				c.SessionTimeout != DefaultSessionTimeout || c.RebalanceTimeout != DefaultRebalanceTimeout {
				t.Fatalf("reader: join backoff %s, heartbeat %s, session %s, rebalance %s; want %s and the defaults",
					c.JoinGroupBackoff, c.HeartbeatInterval, c.SessionTimeout, c.RebalanceTimeout, tt.want)
			}
		})
	}
}
