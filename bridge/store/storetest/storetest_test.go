package storetest

import (
	"database/sql"
	"net/url"
	"strings"
	"testing"
)

// A schema is where the returned URL's tables go, and it is gone, with
// them, once the test that made it ends.
func TestSchema(t *testing.T) {
	base := DatabaseURL(t)
	var schema string
	t.Run("uses", func(t *testing.T) {
		u := Schema(t, base, "t_storetest")
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		schema = pu.Query().Get("search_path")
		if !strings.HasPrefix(schema, "t_storetest_") || len(schema) != len("t_storetest_")+12 {
			t.Fatalf("search_path %q, want t_storetest_ and 12 hex digits", schema)
		}
		db, err := sql.Open("pgx", u)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("CREATE TABLE probe (id int)"); err != nil {
			t.Fatal(err)
		}
		var in string
		if err := db.QueryRow("SELECT table_schema FROM information_schema.tables WHERE table_name = 'probe' AND table_schema = current_schema()").Scan(&in); err != nil || in != schema {
			t.Fatalf("the table went to %q (%v), want %q", in, err, schema)
		}
	})
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil || n != 0 {
		t.Errorf("schema %s: %d left after its test (%v), want it dropped", schema, n, err)
	}
}

func TestDatabases(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string
	}{{"", "sqlite"}, {"postgres://postgres@127.0.0.1:5432/x", "sqlite postgres"}} {
		t.Setenv(EnvDatabaseURL, tc.url)
		if got := strings.Join(Databases(), " "); got != tc.want {
			t.Errorf("%s=%q: Databases() = %q, want %q", EnvDatabaseURL, tc.url, got, tc.want)
		}
	}
}
