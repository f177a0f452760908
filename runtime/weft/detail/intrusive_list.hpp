// weft: the intrusive doubly linked lists that wait lists, the blocking pool's queue, the
// acceptor's waiters (FIFOs: head and tail pointers) and the cancel scopes (head only) keep,
// links inside the nodes.
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

/// Puts `n` at the front of the list kept by its `head` alone.
template <auto Prev, auto Next, class T>
void list_push_front(T*& head, T& n) noexcept {
  n.*Prev = nullptr;
  n.*Next = head;
  if (head != nullptr) head->*Prev = &n;
  head = &n;
}

/// Unlinks `n`, which must be in the list kept by its `head` alone, and clears its links.
template <auto Prev, auto Next, class T>
void list_unlink(T*& head, T& n) noexcept {
  (n.*Prev != nullptr ? (n.*Prev)->*Next : head) = n.*Next;
  if (n.*Next != nullptr) (n.*Next)->*Prev = n.*Prev;
  n.*Prev = n.*Next = nullptr;
}

}  // namespace weft::detail
