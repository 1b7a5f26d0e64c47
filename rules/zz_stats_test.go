package rules

import "testing"

func TestZZStats(t *testing.T) {
	set, _ := Load("builtin")
	var n, full, headerFull, matched, bad int
	forEachCorpusRecord(t, func(place string, line []byte) {
		n++
		var ev Event
		complete, err := DecodeHeader(&ev, line)
		if err != nil { bad++; return }
		if complete { headerFull++ }
		m, c, _ := set.MatchHeader(&ev, complete, nil, nil)
		if c { full++ }
		if len(m) > 0 { matched++ }
	})
	t.Logf("records %d bad %d headerFallback %d fullDecode %d matched %d enabled %d", n, bad, headerFull, full, matched, len(set.enabled))
}
