package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/handoffhq/handoff/bridge"
)

// The jobs that run on one replica per deployment, each under its own lease
// (a row of the leases table).
const (
	jobPoller  = "poller"
	jobSweeper = "sweeper"
	jobWeekly  = "review-weekly"
)

var leaderJobs = []string{jobPoller, jobSweeper, jobWeekly}

// leaseHolder names this process in the leases table: host, pid and a random
// part (a restarted process with the same pid is a new holder).
func leaseHolder() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// leads reports whether this replica runs job now (see leaderJobs). Gauges
// that every replica would report identically, such as counts read from the
// shared database, are exported where leads(jobSweeper) is true, so summing
// them across replicas is right. False when the bridge is not wired.
func (a *app) leads(job string) bool {
	return a.leader != nil && a.leader.Leads(job)
}

// leaderCollector exports which jobs this replica leads.
type leaderCollector struct{ leader *bridge.Leader }

var descLeader = prometheus.NewDesc("handoff_leader", "1 when this replica holds the job's lease and runs it (poller, sweeper, review-weekly), else 0.", []string{"job"}, nil)

func (c leaderCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descLeader }

func (c leaderCollector) Collect(ch chan<- prometheus.Metric) {
	for _, job := range leaderJobs {
		v := 0.0
		if c.leader.Leads(job) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, v, job)
	}
}
