package lru

import "testing"

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := New[string, int](2)
	c.Put("a", 1)
	c.Put("b", 2)
	c.Get("a") // b is now the oldest
	c.Put("c", 3)
	if _, ok := c.Get("b"); ok {
		t.Fatal("b should be gone")
	}
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatal("a lost")
	}
	c.Update("a", func(old int, ok bool) (int, bool) { return old + 10, true })
	if v, _ := c.Get("a"); v != 11 {
		t.Fatal("update")
	}
	c.Update("a", func(int, bool) (int, bool) { return 0, false })
	c.Delete("c")
	if c.Len() != 0 {
		t.Fatalf("len %d", c.Len())
	}
	for i := range 1000 {
		c.Put(string(rune('a'+i%26))+string(rune(i)), i)
	}
	if c.Len() != 2 {
		t.Fatalf("bound not kept: %d", c.Len())
	}
}
