// lease_table.h: the indexes by id, display, uid and connection agree with a
// plain model after every add and remove, whatever the order.
#include "core/lease_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace xpra_broker {
namespace {

Lease make_lease(std::string id, std::uint32_t display, uid_t uid, ConnectionId connection) {
  Lease l;
  l.id = std::move(id);
  l.display = display;
  l.uid = uid;
  l.gid = uid + 10000;
  l.holder_pid = static_cast<pid_t>(display) + 1;
  l.user = "user" + std::to_string(uid);
  l.runtime_dir = "/run/xpra/" + std::to_string(uid);
  l.purpose = "test";
  l.connection = connection;
  return l;
}

// Checks every query of the table against a model of the leases it holds.
void expect_matches(const LeaseTable& table, const std::map<std::string, Lease>& model) {
  ASSERT_EQ(table.size(), model.size());
  std::map<uid_t, std::vector<std::uint32_t>> displays_by_uid;
  std::map<ConnectionId, std::vector<std::string>> ids_by_connection;
  std::vector<std::uint32_t> all_displays;
  for (const auto& [id, lease] : model) {
    const Lease* found = table.find(id);
    ASSERT_NE(found, nullptr) << id;
    EXPECT_EQ(found->id, id);
    EXPECT_EQ(found->display, lease.display);
    EXPECT_EQ(found->uid, lease.uid);
    EXPECT_EQ(found->connection, lease.connection);
    EXPECT_EQ(found->user, lease.user);
    EXPECT_EQ(table.find_by_display(lease.display), found) << "display " << lease.display;
    displays_by_uid[lease.uid].push_back(lease.display);
    ids_by_connection[lease.connection].push_back(id);
    all_displays.push_back(lease.display);
  }
  for (auto& [uid, displays] : displays_by_uid) {
    std::sort(displays.begin(), displays.end());
    EXPECT_EQ(table.count_for_uid(uid), displays.size()) << "uid " << uid;
    std::vector<std::uint32_t> got;
    for (const Lease* l : table.for_uid(uid)) {
      ASSERT_NE(l, nullptr);
      EXPECT_EQ(l->uid, uid);
      got.push_back(l->display);
    }
    EXPECT_EQ(got, displays) << "for_uid(" << uid << ") must hold the uid's leases ordered by display";
  }
  for (auto& [conn, ids] : ids_by_connection) {
    auto got = table.ids_for_connection(conn);
    std::sort(got.begin(), got.end());
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(got, ids) << "connection " << conn;
  }
  std::sort(all_displays.begin(), all_displays.end());
  std::vector<std::uint32_t> got_all;
  for (const Lease* l : table.all()) {
    ASSERT_NE(l, nullptr);
    got_all.push_back(l->display);
  }
  EXPECT_EQ(got_all, all_displays) << "all() must be ordered by display";
}

// Queries about uids/connections/displays with no lease must come back empty.
void expect_gone(const LeaseTable& table, const Lease& lease) {
  EXPECT_EQ(table.find(lease.id), nullptr);
  EXPECT_EQ(table.find_by_display(lease.display), nullptr);
}

TEST(LeaseTableTest, EmptyTable) {
  LeaseTable t;
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.find("x"), nullptr);
  EXPECT_EQ(t.find_by_display(100), nullptr);
  EXPECT_EQ(t.count_for_uid(1000), 0u);
  EXPECT_TRUE(t.for_uid(1000).empty());
  EXPECT_TRUE(t.ids_for_connection(1).empty());
  EXPECT_TRUE(t.all().empty());
  EXPECT_FALSE(t.remove("x").has_value());
}

TEST(LeaseTableTest, AddFindRemove) {
  LeaseTable t;
  ASSERT_TRUE(t.add(make_lease("aaaa", 100, 1001, 7)));
  const Lease* l = t.find("aaaa");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->display, 100u);
  EXPECT_EQ(l->runtime_dir, "/run/xpra/1001");
  EXPECT_EQ(t.find_by_display(100), l);
  EXPECT_EQ(t.count_for_uid(1001), 1u);
  EXPECT_EQ(t.ids_for_connection(7), std::vector<std::string>{"aaaa"});

  const auto removed = t.remove("aaaa");
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(removed->id, "aaaa");
  EXPECT_EQ(removed->display, 100u);
  EXPECT_EQ(removed->uid, 1001u);
  EXPECT_EQ(removed->connection, 7u);
  EXPECT_EQ(removed->purpose, "test");
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.find("aaaa"), nullptr);
  EXPECT_EQ(t.find_by_display(100), nullptr);
  EXPECT_EQ(t.count_for_uid(1001), 0u);
  EXPECT_TRUE(t.for_uid(1001).empty());
  EXPECT_TRUE(t.ids_for_connection(7).empty());
  EXPECT_FALSE(t.remove("aaaa").has_value()) << "removing twice finds nothing";
}

TEST(LeaseTableTest, DuplicateIdIsRefusedAndChangesNothing) {
  LeaseTable t;
  ASSERT_TRUE(t.add(make_lease("same", 100, 1001, 1)));
  EXPECT_FALSE(t.add(make_lease("same", 101, 1002, 2)));
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.find("same")->display, 100u);
  EXPECT_EQ(t.find_by_display(101), nullptr);
  EXPECT_EQ(t.count_for_uid(1002), 0u);
  EXPECT_TRUE(t.ids_for_connection(2).empty());
}

TEST(LeaseTableTest, DuplicateDisplayIsRefusedAndChangesNothing) {
  LeaseTable t;
  ASSERT_TRUE(t.add(make_lease("first", 100, 1001, 1)));
  EXPECT_FALSE(t.add(make_lease("second", 100, 1002, 2)));
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.find("second"), nullptr);
  EXPECT_EQ(t.find_by_display(100)->id, "first");
  EXPECT_EQ(t.count_for_uid(1002), 0u);
  EXPECT_TRUE(t.ids_for_connection(2).empty());
  // The refused add must not have damaged the first lease's index entries.
  ASSERT_TRUE(t.remove("first").has_value());
  EXPECT_EQ(t.count_for_uid(1001), 0u);
  EXPECT_TRUE(t.ids_for_connection(1).empty());
}

TEST(LeaseTableTest, ForUidIsSortedByDisplayWhateverTheInsertionOrderOrIds) {
  LeaseTable t;
  // Ids sort the opposite way to displays, and insertion is shuffled.
  ASSERT_TRUE(t.add(make_lease("a", 130, 1001, 1)));
  ASSERT_TRUE(t.add(make_lease("d", 100, 1001, 2)));
  ASSERT_TRUE(t.add(make_lease("x", 115, 1002, 1)));
  ASSERT_TRUE(t.add(make_lease("b", 120, 1001, 1)));
  ASSERT_TRUE(t.add(make_lease("c", 110, 1001, 3)));
  std::vector<std::uint32_t> displays;
  for (const Lease* l : t.for_uid(1001)) displays.push_back(l->display);
  EXPECT_EQ(displays, (std::vector<std::uint32_t>{100, 110, 120, 130}));
  EXPECT_EQ(t.count_for_uid(1001), 4u);
  EXPECT_EQ(t.count_for_uid(1002), 1u);
}

TEST(LeaseTableTest, AllIsOrderedByDisplay) {
  LeaseTable t;
  for (std::uint32_t d : {150u, 101u, 999u, 100u, 420u}) ASSERT_TRUE(t.add(make_lease("id" + std::to_string(d), d, d % 3, 1)));
  std::vector<std::uint32_t> displays;
  for (const Lease* l : t.all()) displays.push_back(l->display);
  EXPECT_EQ(displays, (std::vector<std::uint32_t>{100, 101, 150, 420, 999}));
}

TEST(LeaseTableTest, IdsForConnectionListsExactlyThatConnectionsLeases) {
  LeaseTable t;
  ASSERT_TRUE(t.add(make_lease("c1-a", 100, 1001, 1)));
  ASSERT_TRUE(t.add(make_lease("c2-a", 101, 1001, 2)));
  ASSERT_TRUE(t.add(make_lease("c1-b", 102, 1002, 1)));  // another uid, same connection id
  ASSERT_TRUE(t.add(make_lease("c3-a", 103, 1003, 3)));
  auto ids = t.ids_for_connection(1);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"c1-a", "c1-b"}));
  EXPECT_EQ(t.ids_for_connection(2), std::vector<std::string>{"c2-a"});
  EXPECT_TRUE(t.ids_for_connection(4).empty());
  // The returned ids are a copy: removing them one by one is safe.
  for (const auto& id : t.ids_for_connection(1)) ASSERT_TRUE(t.remove(id).has_value());
  EXPECT_TRUE(t.ids_for_connection(1).empty());
  EXPECT_EQ(t.size(), 2u);
}

// Regression: remove() once took `const std::string&`, and callers passed the
// stored lease's own id. The lease was moved out and erased before the id was
// used to clean the uid and connection indexes, which then read a dangling
// (or moved-from) string and left stale index entries behind.
TEST(LeaseTableTest, RemoveWithTheStoredLeasesOwnIdAsArgument) {
  // Short ids (small-string buffer) and long ones (heap) behave differently
  // when moved from; both must work.
  for (const std::string& id : {std::string("0123456789abcdef"), std::string("k"),
                               std::string("a-much-longer-lease-identifier-on-the-heap-0123456789")}) {
    SCOPED_TRACE(id);
    LeaseTable t;
    ASSERT_TRUE(t.add(make_lease(id, 100, 1001, 9)));
    ASSERT_TRUE(t.add(make_lease(id + "-other", 101, 1001, 9)));
    const std::string& stored_id = t.find(id)->id;
    const auto removed = t.remove(stored_id);
    ASSERT_TRUE(removed.has_value());
    EXPECT_EQ(removed->id, id);
    EXPECT_EQ(removed->display, 100u);
    EXPECT_EQ(t.find(id), nullptr);
    EXPECT_EQ(t.count_for_uid(1001), 1u) << "uid index still holds the removed id";
    EXPECT_EQ(t.ids_for_connection(9), std::vector<std::string>{id + "-other"})
        << "connection index still holds the removed id";
    std::vector<std::uint32_t> displays;
    for (const Lease* l : t.for_uid(1001)) {
      ASSERT_NE(l, nullptr) << "for_uid returned an index entry with no lease";
      displays.push_back(l->display);
    }
    EXPECT_EQ(displays, std::vector<std::uint32_t>{101});

    // Same with the last lease of the uid and connection: the index entries
    // must go entirely.
    const std::string& other_id = t.find(id + "-other")->id;
    ASSERT_TRUE(t.remove(other_id).has_value());
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(t.count_for_uid(1001), 0u);
    EXPECT_TRUE(t.for_uid(1001).empty());
    EXPECT_TRUE(t.ids_for_connection(9).empty());
  }
}

TEST(LeaseTableTest, RemoveWithTheIdOfAForUidResult) {
  // The broker's close_login loop: ids taken from for_uid() pointers.
  LeaseTable t;
  for (std::uint32_t d = 100; d < 110; ++d) ASSERT_TRUE(t.add(make_lease("lease-" + std::to_string(d), d, 1001, 1)));
  while (!t.for_uid(1001).empty()) ASSERT_TRUE(t.remove(t.for_uid(1001).front()->id).has_value());
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.count_for_uid(1001), 0u);
  EXPECT_TRUE(t.ids_for_connection(1).empty());
  EXPECT_TRUE(t.all().empty());
}

TEST(LeaseTableTest, ReAddAfterRemoveReusesIdAndDisplay) {
  LeaseTable t;
  ASSERT_TRUE(t.add(make_lease("x", 100, 1001, 1)));
  ASSERT_TRUE(t.remove("x").has_value());
  ASSERT_TRUE(t.add(make_lease("x", 100, 1002, 2)));
  EXPECT_EQ(t.find("x")->uid, 1002u);
  EXPECT_EQ(t.count_for_uid(1001), 0u);
  EXPECT_EQ(t.count_for_uid(1002), 1u);
  EXPECT_TRUE(t.ids_for_connection(1).empty());
  EXPECT_EQ(t.ids_for_connection(2), std::vector<std::string>{"x"});
}

TEST(LeaseTableTest, IndexesStayConsistentForEveryRemovalOrder) {
  // Five leases spread over two uids and two connections, removed in all 120
  // orders; the table is checked against the model after every step.
  const std::vector<Lease> leases = {
      make_lease("L0", 104, 1001, 1), make_lease("L1", 100, 1002, 1), make_lease("L2", 103, 1001, 2),
      make_lease("L3", 101, 1001, 1), make_lease("L4", 102, 1002, 2),
  };
  std::vector<int> order(leases.size());
  std::iota(order.begin(), order.end(), 0);
  int permutations = 0;
  do {
    ++permutations;
    LeaseTable t;
    std::map<std::string, Lease> model;
    // Add in the permuted order too.
    for (int i : order) {
      ASSERT_TRUE(t.add(leases[i]));
      model.emplace(leases[i].id, leases[i]);
    }
    ASSERT_NO_FATAL_FAILURE(expect_matches(t, model));
    std::vector<int> removal(order.rbegin(), order.rend());
    std::rotate(removal.begin(), removal.begin() + 2, removal.end());
    for (int i : removal) {
      ASSERT_TRUE(t.remove(t.find(leases[i].id)->id).has_value());
      model.erase(leases[i].id);
      expect_gone(t, leases[i]);
      ASSERT_NO_FATAL_FAILURE(expect_matches(t, model));
    }
    EXPECT_EQ(t.count_for_uid(1001), 0u);
    EXPECT_EQ(t.count_for_uid(1002), 0u);
    EXPECT_TRUE(t.ids_for_connection(1).empty());
    EXPECT_TRUE(t.ids_for_connection(2).empty());
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(permutations, 120);
}

TEST(LeaseTableTest, IndexesStayConsistentThroughRandomAddsAndRemoves) {
  std::mt19937 rng(99);
  LeaseTable t;
  std::map<std::string, Lease> model;
  std::set<std::uint32_t> used_displays;
  for (int step = 0; step < 5000; ++step) {
    if (model.empty() || rng() % 3 != 0) {
      const std::string id = "id" + std::to_string(rng() % 400);
      const std::uint32_t display = 100 + rng() % 200;
      const Lease lease = make_lease(id, display, 1000 + rng() % 5, 1 + rng() % 6);
      const bool expect = !model.count(id) && !used_displays.count(display);
      ASSERT_EQ(t.add(lease), expect) << "step " << step;
      if (expect) {
        model.emplace(id, lease);
        used_displays.insert(display);
      }
    } else {
      auto it = model.begin();
      std::advance(it, rng() % model.size());
      const Lease expected = it->second;
      // Half the time by the table's own id, half by a copy.
      const auto removed = rng() % 2 ? t.remove(t.find(expected.id)->id) : t.remove(std::string(expected.id));
      ASSERT_TRUE(removed.has_value());
      EXPECT_EQ(removed->display, expected.display);
      used_displays.erase(expected.display);
      model.erase(it);
    }
    if (step % 50 == 0) {
      ASSERT_NO_FATAL_FAILURE(expect_matches(t, model)) << "step " << step;
    }
    // Uids and connections without leases (expect_matches only sees those with).
    for (uid_t uid = 1000; uid < 1005; ++uid) {
      std::size_t n = 0;
      for (const auto& [id, l] : model) n += l.uid == uid ? 1 : 0;
      ASSERT_EQ(t.count_for_uid(uid), n) << "uid " << uid << " at step " << step;
    }
    for (ConnectionId c = 1; c <= 6; ++c) {
      std::size_t n = 0;
      for (const auto& [id, l] : model) n += l.connection == c ? 1 : 0;
      ASSERT_EQ(t.ids_for_connection(c).size(), n) << "connection " << c << " at step " << step;
    }
  }
  ASSERT_NO_FATAL_FAILURE(expect_matches(t, model));
}

}  // namespace
}  // namespace xpra_broker
