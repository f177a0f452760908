/*
 * weft: a Promela model of the multi-thread executor's parking / wake-up protocol
 * (sched/multi_thread.cpp, on the parking_lot of sched/park.hpp: schedule/start/defer,
 * push_local, push_inject_and_notify, next_task, search, notify_parked, transition_to_searching, transition_from_searching, work_visible,
 * park, worker_loop). README.md in this directory says how to check it; check.sh does it.
 *
 * Memory model. Promela interleaves whole statements: it is sequentially consistent. The C++
 * code uses seq_cst RMWs/loads on searching_ and sleeping_ and a seq_cst fence
 * (store_load_fence) between the push and the counter reads in notify_parked, and between the
 * registration as a sleeper and the queue re-check in park. By the C++20 fence rule
 * ([atomics.order]: a write sequenced before fence X, a read sequenced after fence Y, X before
 * Y in the single total order S => the read sees the write or a later one), each side of that
 * Dekker pair sees the other's store exactly as under SC, so the relaxed/acquire loads of
 * work_visible (inject_size_, head_/tail_) may be modelled as SC reads, and the fences
 * themselves are no-ops here (marked "fence"). Sections under idle_mutex_ / inject_mutex_ and
 * single CAS/RMW operations are atomic blocks; every access to the parking state is a step of
 * its own, so spin tries all interleavings of them.
 *
 * Abstractions (each either over-approximates the C++ behaviour or is argued inline):
 *  - Tasks are activation ids 1..K; every push of a handle is a new id. K bounds the model.
 *  - Local queues and the inject queue are FIFO channels; a push becomes visible in one step
 *    (the tail_ / inject_size_ store).
 *  - next_task (LIFO slot, own queue, inject) is one step: the LIFO slot is thread-local and
 *    only the owner pushes to its own queue, so "own queue empty" cannot change before the
 *    inject pop (a reduction, not a loss of behaviour). The LIFO streak limit is a
 *    nondeterministic choice to move the slot's task behind the queue (push_local, no notify).
 *  - steal_into: the claim (CAS on the victim's head) takes n - n/2 tasks in one step (also 2
 *    of 2, a superset, so that K = 3 reaches it); the thief runs the first, the others are
 *    invisible ("in transit") until the thief's own tail store, a separate step. The victims
 *    are the other workers in any rotation, as in search().
 *  - work_visible skips the parker's own queue: it is empty (next_task found it empty and only
 *    its owner pushes to it).
 *  - notify_parked wakes any sleeper but the caller (the code: the most recent one).
 *  - push_inject_and_notify (a foreign thread) holds inject_mutex_ over its notify_parked;
 *    the model lets inject pops interleave there too (a superset; the lock order
 *    inject_mutex_ -> idle_mutex_ is never reversed, so the lock adds no deadlock).
 *  - transition_to_searching: its two relaxed loads may be stale, so the model may refuse
 *    whenever searching_ > 0 and may always accept (a superset of the "at most half" rule).
 *  - The eventfd is a sticky bit per worker: set by the waker (under idle_mutex_), consumed by
 *    the blocking poll, which waits for it, or reaped early by a non-blocking poll.
 *  - I/O: a running task may submit one I/O on its worker's ring; a later poll of that ring
 *    (blocking or not) completes it and the completion schedules the task on that worker's
 *    local queue (schedule() with running_task false: push_local + notify_parked, self = that
 *    worker). A blocking poll returns only for its eventfd or such a completion: no spurious
 *    returns, the worst case for lost wake-ups.
 *  - A task, when run, spawns (start: push_local + notify) or wakes tasks (schedule from the
 *    running task: LIFO slot, the displaced task to the local queue + notify) any number of
 *    times within the budget, then ends, or yields (defer: push_local, no notify), or submits
 *    I/O and waits for it. -DNO_LIFO / NO_DEFER / NO_IO drop these choices.
 *  - Left out: queue overflow to inject (capacity 256), event_interval, shutdown (stopping_,
 *    main_done_, wake_worker0, cancel_all), timers (like I/O: they only make polls return).
 *
 * Properties.
 *  - assertion in take(): a task is taken (run) at most once;
 *  - process lost_wakeup: when no process can move any more (every worker blocked in its ring,
 *    the producer done), no task is left queued; invalid end states (a process stuck elsewhere)
 *    are deadlocks;
 *  - LTL `live`: [] (pending > 0 -> <> pending == 0), under weak fairness: every pushed task
 *    is eventually taken by some worker (no lost wake-up, no livelock).
 *
 * Bug injection (-D...), each must make spin fail:
 *  BUG_NO_RECHECK            park blocks without re-checking the queues;
 *  BUG_CHECK_BEFORE_REGISTER the re-check happens before registering as a sleeper (no
 *                            store-load ordering between registration and the queue reads);
 *  BUG_DEC_AFTER_CHECK       a searcher leaves searching_ only after its re-check.
 *
 * Known issue (README.md), not a lost wake-up in the sense above: -DHOG lets one worker run a
 * task that never suspends (a CPU-bound loop, a blocking call); spin then finds a task left
 * queued while another worker sleeps. -DFIX_SEEN_SEARCHING (a parker whose re-check sees work
 * stays a searcher, so it wakes the next worker when it takes the work) and -DFIX_NOTIFY_ALL
 * (defer and the LIFO-limit demotion notify too) are the candidate fixes; with both, none.
 */

/* The C++ code has both fixes since they were found: -DUNFIXED models the code before them. */
#ifndef UNFIXED
#define FIX_SEEN_SEARCHING
#define FIX_NOTIFY_ALL
#endif

#ifndef N
#define N 3 /* workers (2 to 4) */
#endif
#ifndef K
#define K 2 /* task activations in all */
#endif
#define NONE 255

chan lq[N] = [K] of { byte };  /* each worker's local steal_queue */
chan inj = [K] of { byte };    /* the inject queue */
bool sleeper[N];               /* in sleepers_ (w.sleeping), guarded by idle_mutex_ */
bool wbit[N];                  /* eventfd written and not yet consumed */
byte searching_;
byte sleeping_;
byte nexttid = 1;              /* next activation id (ghost) */
byte pending;                  /* pushed and not yet taken (ghost) */
byte ran[K + 1];               /* times each id was taken (ghost) */
#ifdef HOG
bool hogged;                   /* some worker runs a task that never suspends (at most one) */
#endif

inline take(t) {
  assert(t != 0 && ran[t] == 0);   /* never run twice */
  ran[t]++;
  pending--;
  t = 0            /* the id is not needed any more: fewer distinct states */
}

/* notify_parked(); self: the calling worker, NONE for a foreign thread. Uses local j. */
inline notify(self) {
  /* fence */
  if
  :: searching_ != 0 -> skip              /* seq_cst load: a searcher will find it */
  :: else ->
     if
     :: sleeping_ == 0 -> skip            /* seq_cst load: nobody sleeps */
     :: else ->
        atomic {                          /* idle_mutex_ */
          if
          :: searching_ != 0 -> skip
          :: else ->
             j = NONE;
             if
             :: sleeper[0] && self != 0 -> j = 0
#if N > 1
             :: sleeper[1] && self != 1 -> j = 1
#endif
#if N > 2
             :: sleeper[2] && self != 2 -> j = 2
#endif
#if N > 3
             :: sleeper[3] && self != 3 -> j = 3
#endif
             :: else -> skip
             fi;
             if
             :: j != NONE ->
                sleeper[j] = false;
                sleeping_--;
                searching_++;                /* it wakes up searching */
                wbit[j] = true               /* reactor->wake(), under the lock */
             :: else -> skip
             fi;
             j = 0
          fi
        }
     fi
  fi
}

/* work_visible(), one load per step: inject_size_, then the other workers' queues in index
   order (the parker's own queue is empty: only its owner pushes to it). Jumps to `seen` or
   `unseen`. Uses x, k. */
inline work_visible() {
  atomic {
    k = 0;
    if
    :: len(inj) > 0 -> goto seen
    :: else -> skip
    fi
  };
recheck:
  atomic {
    x = (k < me -> k : k + 1);
    k++;
    if
    :: len(lq[x]) > 0 -> x = 0; k = 0; goto seen
    :: else -> x = 0
    fi;
    if
    :: k == N - 1 -> k = 0; goto unseen
    :: else -> goto recheck
    fi
  }
}

/* leave searching_ (only in the bug variants: the real park does it inline below) */
inline leave_searching() {
  atomic {
    if
    :: searching -> searching = false; searching_--
    :: else -> skip
    fi
  }
}

active [N] proctype worker() {
  byte me = _pid;
  byte t, x, k, j, st;
  byte tr;          /* a stolen task in transit to this worker's queue */
  /* worker-owned (thread-local in the C++ code) */
  byte lifo;        /* the LIFO slot */
  byte io;          /* id of the I/O outstanding on this worker's ring, 0: none */
  bool searching;   /* w.searching: counted in searching_ */

next:                                   /* next_task() */
  atomic {
    if
    :: lifo != 0 -> t = lifo; lifo = 0; take(t); goto running
#ifdef FIX_NOTIFY_ALL
    :: lifo != 0 -> lq[me]!lifo; lifo = 0; goto demoted
#else
    :: lifo != 0 -> lq[me]!lifo; lifo = 0   /* streak over: behind the queue, no notify */
#endif
    :: else -> skip
    fi;
    if
    :: len(lq[me]) > 0 -> lq[me]?t; take(t); goto running
    :: else -> skip
    fi;
    if
    :: len(inj) > 0 -> inj?t; take(t); goto running
    :: else -> skip
    fi
  }
                                        /* poll(block=false), then next_task() again */
  atomic {
    if
    :: wbit[me] -> wbit[me] = false     /* a stale wake-up's completion reaped here */
    :: true -> skip
    fi;
    if
    :: io != 0 -> lq[me]!io; io = 0; pending++; goto polled_io
    :: true -> skip                     /* not completed yet */
    fi;
    if
    :: len(inj) > 0 -> inj?t; take(t); goto running
    :: else -> skip
    fi
  }
                                        /* transition_to_searching() */
  atomic {
    if
    :: searching -> skip
    :: !searching -> searching_++; searching = true
    :: !searching && searching_ > 0 -> goto park    /* refused: others search */
    fi
  }
                                        /* search(): inject, steal, inject */
  atomic {
    if
    :: len(inj) > 0 -> inj?t; take(t); goto running
    :: else -> skip
    fi;
    k = 0;
    if
    :: st = 0
#if N > 2
    :: st = 1
#endif
#if N > 3
    :: st = 2
#endif
    fi
  }
steal:
  atomic {                              /* steal_into: the CAS on the victim's head */
    x = (me + 1 + (st + k) % (N - 1)) % N;
    if
    :: len(lq[x]) > 0 ->
       k = len(lq[x]);
       assert(k <= 4);
       lq[x]?t;
       take(t);
       if                               /* n - n/2 = 2 for n = 3, 4: one more, in */
       :: k >= 2 -> lq[x]?tr            /* transit (also allowed for n = 2, a superset) */
       :: k < 3 -> skip
       fi;
       x = 0;
       k = 0;
       st = 0;
       if
       :: tr != 0 -> goto publish
       :: else -> goto running
       fi
    :: else -> x = 0; k++
    fi;
    if
    :: k < N - 1 -> goto steal
    :: else -> k = 0; st = 0
    fi
  };
  atomic {
    if
    :: len(inj) > 0 -> inj?t; take(t); goto running
    :: else -> goto park
    fi
  };

publish:
  atomic { lq[me]!tr; tr = 0; goto running }  /* dst.tail_ store: now visible to the others */

polled_io:
  notify(me);
  goto next;

#ifdef FIX_NOTIFY_ALL
demoted:
  notify(me);
  goto next;
#endif

park:
#ifdef BUG_CHECK_BEFORE_REGISTER
  leave_searching();
#else
  atomic {                              /* idle_mutex_: register */
    sleeper[me] = true;
    sleeping_++;
#ifndef BUG_DEC_AFTER_CHECK
    if
    :: !searching -> goto fence
    :: else -> skip
    fi
#endif
  };
#ifndef BUG_DEC_AFTER_CHECK
  atomic { searching = false; searching_-- };
#endif
#endif
fence:                                  /* store-load fence, then work_visible() */
#ifdef BUG_NO_RECHECK
  goto unseen;
#endif
  work_visible();

seen:
#if defined(BUG_CHECK_BEFORE_REGISTER)
  goto next;                            /* not registered: nothing to undo */
#elif defined(BUG_DEC_AFTER_CHECK)
  leave_searching();
  goto relock;
#elif defined(FIX_SEEN_SEARCHING)
  atomic {                              /* idle_mutex_; stays a searcher, so that when it */
    if                                  /* takes the work it wakes the next worker */
    :: sleeper[me] -> sleeper[me] = false; sleeping_--; searching_++
    :: else -> skip
    fi;
    searching = true
  };
  goto next;
#else
  goto relock;
#endif

unseen:
#if defined(BUG_CHECK_BEFORE_REGISTER)
  atomic { sleeper[me] = true; sleeping_++ };  /* registers after its check */
#elif defined(BUG_DEC_AFTER_CHECK)
  leave_searching();
#endif
end_blocked:                            /* poll(block=true): I/O or a wake-up */
  if
  :: atomic { wbit[me] -> wbit[me] = false }
  :: atomic { io != 0 -> lq[me]!io; io = 0; pending++ };
     notify(me)
  fi;

relock:
  atomic {                              /* idle_mutex_ */
    if
    :: sleeper[me] -> sleeper[me] = false; sleeping_--   /* woke by itself or saw work */
    :: else -> searching = true                         /* notify_parked counted it */
    fi
  };
  goto next;

running:                                /* transition_from_searching() */
  atomic {
    if
    :: searching ->
       searching = false;
       if                                 /* fetch_sub: the last searcher wakes another */
       :: searching_ == 1 -> searching_--
       :: else -> searching_--; goto body
       fi
    :: else -> goto body
    fi
  };
  notify(me);
body:                                   /* resume the task: what it does to the scheduler */
  if
  :: atomic { t = 0; goto next }        /* ends, or waits for something else */
  :: atomic { nexttid <= K ->           /* start(): a spawn; then it goes on */
       lq[me]!nexttid; nexttid++; pending++ };
     notify(me);
     goto body
#ifndef NO_LIFO
  :: atomic { nexttid <= K ->           /* schedule() by the running task: the LIFO slot */
       t = lifo; lifo = nexttid; nexttid++; pending++;
       if
       :: t != 0 -> lq[me]!t; t = 0     /* the one it displaces: queue + notify */
       :: else -> goto body
       fi };
     notify(me);
     goto body
#endif
#ifndef NO_DEFER
#ifdef FIX_NOTIFY_ALL
  :: atomic { nexttid <= K -> lq[me]!nexttid; nexttid++; pending++ };
     /* As multi_thread::defer: notify only when other work waits on this worker too. */
     if
     :: len(lq[me]) > 1 || lifo != 0 -> notify(me)
     :: else -> skip
     fi;
     goto next
#else
  :: atomic { nexttid <= K ->           /* defer() of itself (yield): no notify */
       lq[me]!nexttid; nexttid++; pending++; goto next }
#endif
#endif
#ifdef HOG
  :: atomic { !hogged ->                /* a task that never suspends: occupies its worker */
       hogged = true;                   /* (its LIFO slot is not stealable, by design) */
       if
       :: lifo != 0 -> lifo = 0; pending--
       :: else -> skip
       fi };
end_hog:
     false
#endif
#ifndef NO_IO
  :: atomic { nexttid <= K && io == 0 -> /* submits I/O on this ring and waits for it */
       io = nexttid; nexttid++; goto next }
#endif
  fi
}

/* a thread outside the workers: schedule() -> push_inject_and_notify (self = none) */
active proctype producer() {
  byte j;
  do
  :: atomic { nexttid <= K -> inj!nexttid; nexttid++; pending++ };
     notify(NONE)
  :: else -> break
  od
}

/* When nothing can move any more, no task may be left in a queue. */
active proctype lost_wakeup() {
  timeout -> assert(pending == 0)
}

ltl live { [] ((pending > 0) -> <> (pending == 0)) }
