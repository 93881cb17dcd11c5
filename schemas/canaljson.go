package schemas

import (
	"errors"
)

// ErrDDL is wrapped (together with ErrDecode) by DecodeCanalJSON and Decode when a
// canal-json message is a DDL statement or another message that carries no row
// change (type QUERY, CREATE, ALTER, ERASE, RENAME, CINDEX, DINDEX, GTID,
// XACOMMIT, XAROLLBACK, MHEARTBEAT). Consumers of Canal topics usually skip those:
//
//	changes, err := schemas.Decode(format, value)
//	if errors.Is(err, schemas.ErrDDL) { continue }
//
// A TRUNCATE message is a change of the rows, not only of the schema: it decodes
// to one change with OpTruncate.
var ErrDDL = errors.New("kanal: canal-json message is not a row change")

// java.sql.Types codes of canal-json's sqlType map, and its message types.
const (
	javaBit         = -7
	javaTinyint     = -6
	javaBigint      = -5
	javaLongVarbin  = -4
	javaVarbinary   = -3
	javaBinary      = -2
	javaChar        = 1
	javaDecimal     = 3
	javaInteger     = 4
	javaSmallint    = 5
	javaReal        = 7
	javaDouble      = 8
	javaVarchar     = 12
	javaDate        = 91
	javaTime        = 92
	javaTimestamp   = 93
	javaOther       = 1111
	javaBlob        = 2004
	javaClob        = 2005
	canalTypeInsert = "INSERT"
	canalTypeUpdate = "UPDATE"
	canalTypeDelete = "DELETE"
)
