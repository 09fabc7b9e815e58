package snowtest

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Rows the user may not read (Options.TableACL) are left out of each page
// after paging, without notice.
//
// The Table API subset: GET /api/now/table/{live_message|chat_queue_entry}
// with sysparm_query (=, !=, >, >=, <, <=, IN, NOT IN, STARTSWITH, LIKE,
// ISEMPTY, ISNOTEMPTY joined by ^, ORDERBY/ORDERBYDESC), sysparm_fields,
// sysparm_limit (default 10000), sysparm_offset, sysparm_display_value
// (false|true|all) and sysparm_exclude_reference_link; X-Total-Count and Link
// headers. Like the real one it silently ignores query parts naming unknown
// fields or operators, and unknown sysparm_fields. Every value is a string;
// references are {"link","value"} unless links are excluded.

// cell is one column value of a row.
type cell struct {
	value   string
	display string
	ref     string // referenced table, "" for a plain column
}

type row map[string]cell

type table struct {
	fields []string // in the order the API lists them
	// rows materialises the table's rows, only those of the chats in groups
	// when groups is not nil (a query that names its groups: the fake then
	// costs per chat asked for, not per row it holds, as an indexed query on
	// the instance does). The query's conditions are applied afterwards.
	rows func(in *Instance, groups map[string]bool) []row
}

var tables = map[string]table{
	"live_message": {
		fields: []string{"sys_id", "group", "message", "profile", "reply_to", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count"},
		rows: func(in *Instance, groups map[string]bool) []row {
			msgs := in.messages
			if groups != nil {
				msgs = nil
				for g := range groups {
					if c, ok := in.chats[g]; ok {
						msgs = append(msgs, c.msgs...)
					}
				}
				slices.SortFunc(msgs, func(a, b *Message) int { return cmp.Compare(a.seq, b.seq) }) // creation order
			}
			out := make([]row, 0, len(msgs))
			for _, m := range msgs {
				c := in.chats[m.Group]
				at := fmtTime(m.At)
				out = append(out, row{
					"sys_id":         plain(m.SysID),
					"group":          cell{m.Group, c.Number, "live_group_profile"},
					"message":        plain(m.Text),
					"profile":        cell{m.Profile, m.SenderName, "live_profile"},
					"reply_to":       cell{ref: "live_message"},
					"sys_created_on": plain(at),
					"sys_created_by": plain(m.CreatedBy),
					"sys_updated_on": plain(at),
					"sys_updated_by": plain(m.CreatedBy),
					"sys_mod_count":  plain("0"),
				})
			}
			return out
		},
	},
	"chat_queue_entry": {
		fields: []string{"sys_id", "number", "group", "queue", "state", "assigned_to", "opened_by", "position", "short_description", "work_start", "work_end", "sys_created_on", "sys_created_by", "sys_updated_on"},
		rows: func(in *Instance, groups map[string]bool) []row {
			out := make([]row, 0, len(in.order))
			pos := in.positions()
			for _, c := range in.order {
				if groups != nil && !groups[c.Group] {
					continue
				}
				qname := ""
				for _, q := range in.queues {
					if q.SysID == c.Queue {
						qname = q.Name
					}
				}
				assigned := cell{ref: "sys_user"}
				if c.assignedUser != "" {
					assigned = cell{sysIDOf("sys_user", c.assignedUser), c.AssignedTo, "sys_user"}
				}
				out = append(out, row{
					"sys_id":            plain(c.QueueEntry),
					"number":            plain(c.Number),
					"group":             cell{c.Group, c.Number, "live_group_profile"},
					"queue":             cell{c.Queue, qname, "chat_queue"},
					"state":             cell{strconv.Itoa(int(c.State)), c.State.Label(), ""},
					"assigned_to":       assigned,
					"opened_by":         cell{sysIDOf("sys_user", c.OpenedBy), in.displayName(c.OpenedBy), "sys_user"},
					"position":          plain(strconv.Itoa(pos[c])),
					"short_description": plain(c.ShortDescription),
					"work_start":        plain(fmtTime(c.WorkStart)),
					"work_end":          plain(fmtTime(c.WorkEnd)),
					"sys_created_on":    plain(fmtTime(c.OpenedAt)),
					"sys_created_by":    plain(c.OpenedBy),
					"sys_updated_on":    plain(fmtTime(c.UpdatedAt)),
				})
			}
			return out
		},
	},
}

func plain(s string) cell { return cell{value: s, display: s} }

// condition is one part of an encoded query.
type condition struct {
	field, op, value string
}

type ordering struct {
	field string
	desc  bool
}

// operators, longest first so that ">=" wins over ">".
var operators = []string{"ISNOTEMPTY", "ISEMPTY", "STARTSWITH", "NOT IN", "LIKE", "IN", "!=", ">=", "<=", "=", ">", "<"}

// parseQuery splits an encoded query into conditions and orderings, dropping
// parts it does not understand or whose field is not in known.
func parseQuery(q string, known func(string) bool) ([]condition, []ordering) {
	var (
		conds  []condition
		orders []ordering
	)
	for part := range strings.SplitSeq(q, "^") {
		switch {
		case strings.HasPrefix(part, "ORDERBYDESC"):
			if f := strings.TrimPrefix(part, "ORDERBYDESC"); known(f) {
				orders = append(orders, ordering{f, true})
			}
			continue
		case strings.HasPrefix(part, "ORDERBY"):
			if f := strings.TrimPrefix(part, "ORDERBY"); known(f) {
				orders = append(orders, ordering{f, false})
			}
			continue
		}
		// Field names are lower case; operators are upper case or symbols.
		i := strings.IndexFunc(part, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.')
		})
		if i <= 0 {
			continue
		}
		field, rest := part[:i], part[i:]
		if !known(field) {
			continue
		}
		for _, op := range operators {
			if strings.HasPrefix(rest, op) {
				conds = append(conds, condition{field, op, rest[len(op):]})
				break
			}
		}
	}
	return conds, orders
}

// compare orders two column values: numerically when both are integers,
// otherwise as text (which orders ServiceNow date-times correctly).
func compare(a, b string) int {
	if x, err := strconv.ParseInt(a, 10, 64); err == nil {
		if y, err := strconv.ParseInt(b, 10, 64); err == nil {
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	}
	return strings.Compare(a, b)
}

func (c condition) match(r row) bool {
	v := r[c.field].value
	switch c.op {
	case "=":
		return v == c.value
	case "!=":
		return v != c.value
	case ">":
		return compare(v, c.value) > 0
	case ">=":
		return compare(v, c.value) >= 0
	case "<":
		return compare(v, c.value) < 0
	case "<=":
		return compare(v, c.value) <= 0
	case "IN":
		return slices.Contains(strings.Split(c.value, ","), v)
	case "NOT IN":
		return !slices.Contains(strings.Split(c.value, ","), v)
	case "STARTSWITH":
		return strings.HasPrefix(v, c.value)
	case "LIKE":
		return strings.Contains(strings.ToLower(v), strings.ToLower(c.value))
	case "ISEMPTY":
		return v == ""
	case "ISNOTEMPTY":
		return v != ""
	}
	return true
}

// queriedGroups returns the groups a query is restricted to by a top-level
// group=… or groupIN… condition (nil: not restricted). Conditions are ANDed,
// so the rows outside these groups could never match.
func queriedGroups(conds []condition) map[string]bool {
	var groups map[string]bool
	for _, c := range conds {
		if c.field != "group" || (c.op != "=" && c.op != "IN") {
			continue
		}
		set := map[string]bool{}
		for g := range strings.SplitSeq(c.value, ",") {
			if c.op == "=" {
				set[c.value] = true
				break
			}
			set[g] = true
		}
		if groups != nil { // two conditions: both must hold
			for g := range groups {
				if !set[g] {
					delete(groups, g)
				}
			}
			continue
		}
		groups = set
	}
	return groups
}

// handleTable is GET /api/now/table/{table}.
func (in *Instance) handleTable(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("table")
	t, ok := tables[name]
	if !ok {
		writeError(w, http.StatusBadRequest, "Invalid table "+name, "")
		return
	}
	q := r.URL.Query()
	known := func(f string) bool { return slices.Contains(t.fields, f) }
	conds, orders := parseQuery(q.Get("sysparm_query"), known)
	limit, err := strconv.Atoi(q.Get("sysparm_limit"))
	if err != nil || limit <= 0 {
		limit = 10000
	}
	offset, err := strconv.Atoi(q.Get("sysparm_offset"))
	if err != nil || offset < 0 {
		offset = 0
	}
	fields := t.fields
	if s := q.Get("sysparm_fields"); s != "" {
		fields = nil
		for f := range strings.SplitSeq(s, ",") {
			if f = strings.TrimSpace(f); known(f) && !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
	}
	display := q.Get("sysparm_display_value")
	noLinks := q.Get("sysparm_exclude_reference_link") == "true"
	base := "http://" + r.Host

	in.mu.Lock()
	rows := t.rows(in, queriedGroups(conds))
	acl := in.opts.TableACL
	in.mu.Unlock()

	rows = slices.DeleteFunc(rows, func(rw row) bool {
		for _, c := range conds {
			if !c.match(rw) {
				return true
			}
		}
		return false
	})
	// Rows equal in every ORDERBY field come in no defined order, as from
	// the instance's database, and each page is a query of its own: the
	// first page keeps them in creation order, later pages shuffle them by
	// a hash of sys_id and the offset, so they move between pages unless the
	// query breaks the tie (e.g. ^ORDERBYsys_id).
	tie := func(r row) uint64 {
		if offset == 0 {
			return 0
		}
		h := fnv.New64a()
		fmt.Fprintf(h, "%s/%d", r["sys_id"].value, offset)
		return h.Sum64()
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		for _, o := range orders {
			if n := compare(a[o.field].value, b[o.field].value); n != 0 {
				if o.desc {
					return -n
				}
				return n
			}
		}
		return cmp.Compare(tie(a), tie(b))
	})
	total := len(rows)
	page := rows[min(offset, total):min(offset+limit, total)]
	out := make([]map[string]any, 0, len(page))
	for _, rw := range page {
		if acl != nil {
			vals := make(map[string]string, len(rw))
			for k, c := range rw {
				vals[k] = c.value
			}
			if !acl(user, name, vals) {
				continue // left out silently, still counted in X-Total-Count
			}
		}
		obj := make(map[string]any, len(fields))
		for _, f := range fields {
			obj[f] = render(rw[f], display, noLinks, base)
		}
		out = append(out, obj)
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	if links := pageLinks(base+r.URL.Path, q, offset, limit, total); links != "" {
		w.Header().Set("Link", links)
	}
	writeResult(w, http.StatusOK, out)
}

// render writes one cell as the Table API does for the display_value mode.
func render(c cell, display string, noLinks bool, base string) any {
	switch display {
	case "true":
		return c.display
	case "all":
		o := map[string]any{"display_value": c.display, "value": c.value}
		if c.ref != "" && !noLinks && c.value != "" {
			o["link"] = base + "/api/now/table/" + c.ref + "/" + c.value
		}
		return o
	}
	if c.ref != "" && !noLinks && c.value != "" {
		return map[string]any{"link": base + "/api/now/table/" + c.ref + "/" + c.value, "value": c.value}
	}
	return c.value
}

// pageLinks builds the Link header (first, prev, next, last).
func pageLinks(path string, q url.Values, offset, limit, total int) string {
	link := func(off int, rel string) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("sysparm_limit", strconv.Itoa(limit))
		v.Set("sysparm_offset", strconv.Itoa(off))
		return fmt.Sprintf("<%s?%s>;rel=%q", path, v.Encode(), rel)
	}
	last := 0
	if total > 0 {
		last = (total - 1) / limit * limit
	}
	parts := []string{link(0, "first")}
	if offset > 0 {
		parts = append(parts, link(max(offset-limit, 0), "prev"))
	}
	if offset+limit < total {
		parts = append(parts, link(offset+limit, "next"))
	}
	parts = append(parts, link(last, "last"))
	return strings.Join(parts, ",")
}
