// weft: the intrusive doubly linked FIFO that wait lists, the blocking pool's queue and the
// acceptor's waiters keep (head and tail pointers, links inside the nodes).
#pragma once

namespace weft::detail {

// `Prev` and `Next` are the node's link members (pointers to members of type T*). Not
// thread-safe: the owner's lock guards the list. The list owns no node.

/// Appends `n` to the list `head`..`tail`.
template <auto Prev, auto Next, class T>
void list_push_back(T*& head, T*& tail, T& n) noexcept {
  n.*Prev = tail;
  n.*Next = nullptr;
  (tail != nullptr ? tail->*Next : head) = &n;
  tail = &n;
}

/// Unlinks `n`, which must be in the list `head`..`tail`, and clears its links.
template <auto Prev, auto Next, class T>
void list_remove(T*& head, T*& tail, T& n) noexcept {
  (n.*Prev != nullptr ? (n.*Prev)->*Next : head) = n.*Next;
  (n.*Next != nullptr ? (n.*Next)->*Prev : tail) = n.*Prev;
  n.*Prev = n.*Next = nullptr;
}

}  // namespace weft::detail
