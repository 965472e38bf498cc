package migrate

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A converter turns a value as the SQLite driver returns it (nil, int64,
// float64, string, []byte) into one pgx encodes as the target column's type.
type converter func(v any) (any, error)

// converterFor picks the conversion for a SQLite column (declared type) into
// a PostgreSQL column (information_schema data_type). A type without a
// conversion here fails the plan: extend this switch rather than guess.
func converterFor(sqliteType, pgType string) (converter, error) {
	switch pgType {
	case "boolean":
		return toBool, nil
	case "bytea":
		return toBytes, nil
	case "text", "character varying", "character":
		return toText, nil
	case "bigint", "integer", "smallint":
		return toInt, nil
	case "double precision", "real":
		return toFloat, nil
	case "json", "jsonb":
		return toJSON, nil
	}
	return nil, fmt.Errorf("no conversion from SQLite %q to PostgreSQL %q: add one in internal/migrate/convert.go", sqliteType, pgType)
}

func typeErr(v any, want string) error {
	return fmt.Errorf("value %.40q (%T) cannot become %s", fmt.Sprint(v), v, want)
}

// toBool: SQLite stores flags as 0/1 integers.
func toBool(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case int64:
		if x == 0 || x == 1 {
			return x == 1, nil
		}
	case bool:
		return x, nil
	}
	return nil, typeErr(v, "boolean")
}

func toBytes(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		if x == nil { // the driver's zero-length blob, not NULL (pgx would send NULL)
			x = []byte{}
		}
		return x, nil
	case string:
		return []byte(x), nil
	}
	return nil, typeErr(v, "bytea")
}

func toText(v any) (any, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		s = x
	case []byte:
		s = string(x)
	case int64:
		return strconv.FormatInt(x, 10), nil
	default:
		return nil, typeErr(v, "text")
	}
	if !utf8.ValidString(s) {
		return nil, typeErr(v, "text (not UTF-8)")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return nil, typeErr(v, "text (PostgreSQL text cannot hold a NUL character)")
	}
	return s, nil
}

func toInt(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case int64:
		return x, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
			return int64(x), nil
		}
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	}
	return nil, typeErr(v, "integer")
}

func toFloat(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	}
	return nil, typeErr(v, "double precision")
}

// toJSON passes JSON text through unchanged (pgx sends a string as the JSON
// document itself), after checking that it is JSON.
func toJSON(v any) (any, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return nil, typeErr(v, "json")
	}
	if !json.Valid([]byte(s)) {
		return nil, typeErr(v, "json (not valid JSON)")
	}
	return s, nil
}
