package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/handoffhq/handoff/bridge"
)

// annotationRow is a row of review_annotations.
type annotationRow struct {
	SessionID      string `gorm:"column:session_id;primaryKey"`
	Reviewed       bool   `gorm:"column:reviewed"`
	Intents        string `gorm:"column:intents"`
	ExpectedAction string `gorm:"column:expected_action"`
	Note           string `gorm:"column:note"`
	UpdatedBy      string `gorm:"column:updated_by"`
	UpdatedMS      int64  `gorm:"column:updated_at"`
}

func (annotationRow) TableName() string { return "review_annotations" }

// auditRow is a row of review_audit.
type auditRow struct {
	ID        int64  `gorm:"column:id;primaryKey;autoIncrement"`
	SessionID string `gorm:"column:session_id"`
	Actor     string `gorm:"column:actor"`
	Action    string `gorm:"column:action"`
	Detail    string `gorm:"column:detail"`
	AtMS      int64  `gorm:"column:at"`
}

func (auditRow) TableName() string { return "review_audit" }

func annotationToRow(a bridge.Annotation) (annotationRow, error) {
	intents := map[string]string{}
	for i, v := range a.Intents {
		intents[strconv.Itoa(i)] = v
	}
	raw, err := json.Marshal(intents)
	if err != nil {
		return annotationRow{}, err
	}
	return annotationRow{SessionID: string(a.SessionID), Reviewed: a.Reviewed, Intents: string(raw),
		ExpectedAction: a.ExpectedAction, Note: a.Note, UpdatedBy: a.UpdatedBy, UpdatedMS: toMS(a.UpdatedAt)}, nil
}

func (r annotationRow) annotation() (bridge.Annotation, error) {
	a := bridge.Annotation{SessionID: bridge.SessionID(r.SessionID), Reviewed: r.Reviewed, ExpectedAction: r.ExpectedAction,
		Note: r.Note, UpdatedBy: r.UpdatedBy, UpdatedAt: fromMS(r.UpdatedMS)}
	if r.Intents == "" || r.Intents == "{}" {
		return a, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(r.Intents), &m); err != nil {
		return a, fmt.Errorf("decode annotation intents: %w", err)
	}
	a.Intents = make(map[int]string, len(m))
	for k, v := range m {
		i, err := strconv.Atoi(k)
		if err != nil {
			return a, fmt.Errorf("decode annotation intents: turn %q: %w", k, err)
		}
		a.Intents[i] = v
	}
	return a, nil
}

// caseRow is what the inbox query selects.
type caseRow struct {
	Record         string
	Reviewed       *bool
	Intents        *string
	ExpectedAction *string
	Note           *string
	UpdatedBy      *string
	UpdatedMS      *int64 `gorm:"column:updated_at"`
}

func (c caseRow) decode() (bridge.ReviewCase, error) {
	rec, err := decodeReview([]byte(c.Record))
	if err != nil {
		return bridge.ReviewCase{}, err
	}
	out := bridge.ReviewCase{Record: rec, Annotation: bridge.Annotation{SessionID: rec.SessionID}}
	if c.Reviewed == nil { // no annotation row
		return out, nil
	}
	row := annotationRow{SessionID: string(rec.SessionID), Reviewed: *c.Reviewed, Intents: deref(c.Intents),
		ExpectedAction: deref(c.ExpectedAction), Note: deref(c.Note), UpdatedBy: deref(c.UpdatedBy)}
	if c.UpdatedMS != nil {
		row.UpdatedMS = *c.UpdatedMS
	}
	out.Annotation, err = row.annotation()
	return out, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// caseQuery builds the inbox query of q.
func (s *Store) caseQuery(ctx context.Context, q bridge.ReviewQuery) *gorm.DB {
	db := s.reader().WithContext(ctx).Table("review_records AS r").
		Select("r.record, a.reviewed, a.intents, a.expected_action, a.note, a.updated_by, a.updated_at").
		Joins("LEFT JOIN review_annotations AS a ON a.session_id = r.session_id")
	if !q.From.IsZero() {
		db = db.Where("r.started_at >= ?", ceilMS(q.From))
	}
	if !q.To.IsZero() {
		db = db.Where("r.started_at < ?", ceilMS(q.To))
	}
	if q.Reason != "" {
		db = db.Where("r.reason = ?", q.Reason)
	}
	if q.Intent != "" {
		db = db.Where("r.intent = ?", q.Intent)
	}
	if q.ConfidenceBelow > 0 {
		db = db.Where("r.confidence < ?", q.ConfidenceBelow)
	}
	if q.Topic != "" {
		db = db.Where("LOWER(r.topic) = ?", strings.ToLower(q.Topic))
	}
	if q.CSATMax > 0 {
		db = db.Where("r.csat > 0 AND r.csat <= ?", q.CSATMax)
	}
	if q.Reviewed != nil {
		if *q.Reviewed {
			db = db.Where("a.reviewed = ?", true)
		} else {
			db = db.Where("(a.reviewed IS NULL OR a.reviewed = ?)", false)
		}
	}
	if q.Newest {
		db = db.Order("r.started_at DESC, r.session_id DESC")
	} else {
		db = db.Order("r.started_at, r.session_id")
	}
	if q.Offset > 0 {
		db = db.Offset(q.Offset)
	}
	if q.Limit > 0 {
		db = db.Limit(q.Limit)
	}
	return db
}

// ReviewCases streams the review cases q selects, one row at a time. An error
// from fn stops the stream and is returned unchanged. The stream reads on the
// read pool (SQLite file databases), so a slow fn never holds the writer.
func (s *Store) ReviewCases(ctx context.Context, q bridge.ReviewQuery, fn func(bridge.ReviewCase) error) error {
	rows, err := s.caseQuery(ctx, q).Rows()
	if err != nil {
		return wrap("list review cases", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c caseRow
		if err := rows.Scan(&c.Record, &c.Reviewed, &c.Intents, &c.ExpectedAction, &c.Note, &c.UpdatedBy, &c.UpdatedMS); err != nil {
			return wrap("list review cases", err)
		}
		rc, err := c.decode()
		if err != nil {
			return wrap("list review cases", err)
		}
		if err := fn(rc); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return wrap("list review cases", err)
	}
	return nil
}

// ReviewCase returns one handoff's record and annotation; ErrNotFound if
// there is no record.
func (s *Store) ReviewCase(ctx context.Context, id bridge.SessionID) (bridge.ReviewCase, error) {
	what := fmt.Sprintf("review case %q", id)
	var rec reviewRow
	if err := s.reader().WithContext(ctx).Where("session_id = ?", string(id)).Take(&rec).Error; err != nil {
		return bridge.ReviewCase{}, wrap(what, err)
	}
	r, err := decodeReview([]byte(rec.Record))
	if err != nil {
		return bridge.ReviewCase{}, wrap(what, err)
	}
	out := bridge.ReviewCase{Record: r, Annotation: bridge.Annotation{SessionID: id}}
	var a annotationRow
	err = s.reader().WithContext(ctx).Where("session_id = ?", string(id)).Limit(1).Find(&a).Error
	if err != nil {
		return out, wrap(what, err)
	}
	if a.SessionID != "" {
		if out.Annotation, err = a.annotation(); err != nil {
			return out, wrap(what, err)
		}
	}
	return out, nil
}

// Annotate stores a (the whole annotation replaces the previous one) and
// appends the audit entries, in one transaction. ErrNotFound if the handoff
// has no review record.
func (s *Store) Annotate(ctx context.Context, a bridge.Annotation, audit ...bridge.AuditEntry) error {
	what := fmt.Sprintf("annotate review case %q", a.SessionID)
	row, err := annotationToRow(a)
	if err != nil {
		return wrap(what, err)
	}
	err = s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		var n int64
		if err := db.Model(&reviewRow{}).Where("session_id = ?", string(a.SessionID)).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			return bridge.ErrNotFound
		}
		if err := db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "session_id"}}, UpdateAll: true}).Create(&row).Error; err != nil {
			return err
		}
		for _, e := range audit {
			ar := auditRow{SessionID: string(a.SessionID), Actor: e.Actor, Action: e.Action, Detail: e.Detail, AtMS: toMS(e.At)}
			if err := db.Create(&ar).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return wrap(what, err)
	}
	return nil
}

// ReviewAudit returns the audit log of one handoff, oldest first.
func (s *Store) ReviewAudit(ctx context.Context, id bridge.SessionID) ([]bridge.AuditEntry, error) {
	var rows []auditRow
	if err := s.reader().WithContext(ctx).Where("session_id = ?", string(id)).Order("id").Find(&rows).Error; err != nil {
		return nil, wrap(fmt.Sprintf("audit of review case %q", id), err)
	}
	out := make([]bridge.AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = bridge.AuditEntry{SessionID: id, Actor: r.Actor, Action: r.Action, Detail: r.Detail, At: fromMS(r.AtMS)}
	}
	return out, nil
}
