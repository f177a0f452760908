/*
 * weft: a Promela model of the single-lock executor's parking / wake-up protocol
 * (sched/single_lock.cpp, on the parking_lot of sched/park.hpp: schedule, wake_one, the
 * parking part of thread_loop, and the lock drops of check_point and blocking_release). README.md says how to check it.
 *
 * Memory model: as in parking.pml. wake_one starts with a store-load fence after the push;
 * the parker has one between its registration (sleeping_++) and its load of ready_size_; all
 * counter accesses are seq_cst. Promela's sequential consistency stands for that; the fences
 * are no-ops here. idle_mutex_ and queue_mutex_ sections are atomic blocks.
 *
 * Abstractions.
 *  - Tasks are activation ids 1..K in one FIFO channel (ready_); a push is one step.
 *  - The global lock is a bit taken with `!gil -> gil = true` (who gets it among the waiters
 *    is arbitrary; drop requests, forced switches and the ticks policy only decide when the
 *    holder drops it, modelled as a "check point" choice: drop, then take it again).
 *  - wake_one wakes any sleeper (the code: the most recent one). A foreign thread calls it
 *    still holding queue_mutex_; the model lets pops interleave there (a superset; the lock
 *    order queue_mutex_ -> idle_mutex_ is never reversed).
 *  - The eventfd is a sticky bit per thread, consumed by the blocking poll and perhaps by a
 *    non-blocking one. A task may submit one I/O on its thread's ring; a later poll of that
 *    ring completes it and schedules the task (schedule() -> wake_one; while the thread is in
 *    its parked poll, wake_one returns at once: parked_poll).
 *  - A task, when run: spawns tasks (schedule + wake_one), then ends, or submits I/O, or
 *    reaches a check point, or calls weft::blocking(fn): the lock is dropped while fn runs.
 *    fn may return at once or (unless -DFN_RETURNS) wait until no task is queued any more
 *    (it waits for something a queued task does, e.g. reads a pipe another task writes).
 *  - The watcher (see ARCHITECTURE.md, "single-lock: I/O behind a busy holder"): a parked
 *    thread may wake with nothing to do (its watch period ended, or a new holder recruited it
 *    by writing its eventfd, which does not take it off the sleepers list) and, finding the
 *    queue empty, park again without taking the lock; at most W such wakes in all. The
 *    holder, at a check point, may poll its own ring (the watcher's request): the I/O found
 *    there is queued (schedule -> wake_one), then it may drop the lock and take it again (the
 *    hand-over, whose wait is bounded). Who is the watcher is not modelled: any parked thread
 *    may do all this (a superset).
 *  - Left out: shutdown (stopping_, main_done_, wake_thread0), timers, event_interval.
 *
 * Properties.
 *  - assertion in take(): a task is run at most once;
 *  - process lost_wakeup: when nothing can move any more, no task is queued while a thread
 *    is parked in its ring (the lock is free then, so that thread could run it);
 *  - LTL `live` (with -DFN_RETURNS, under weak fairness): [] (pending > 0 -> <> pending == 0).
 *
 * Variants: BUG_NO_RECHECK (park without re-checking ready_size_), BUG_CHECK_BEFORE_REGISTER
 * (the re-check happens before the registration), each of which spin must reject;
 * FIX_BLOCKING_WAKE (blocking_release calls wake_one when the queue is not empty after
 * dropping the lock: the fix for the lost wake-up this model finds, see README.md).
 */

/* The C++ code has the fix since it was found: -DUNFIXED models the code before it. */
#ifndef UNFIXED
#define FIX_BLOCKING_WAKE
#endif

#ifndef N
#define N 2 /* threads (2 or 3) */
#endif
#ifndef K
#define K 2 /* task activations in all */
#endif
#ifndef W
#define W 2 /* wakes with nothing to do (watch periods, recruits) in all */
#endif

chan ready = [K] of { byte };  /* ready_ */
bool gil;                      /* gil_locked_ */
bool sleeper[N];               /* in sleepers_ (t.sleeping), guarded by idle_mutex_ */
bool wbit[N];                  /* eventfd written and not yet consumed */
byte sleeping_;
byte waking_;
byte nexttid = 1;              /* next activation id (ghost) */
byte pending;                  /* pushed and not yet taken (ghost) */
byte idle_wakes;               /* wakes with nothing to do so far (bounded by W) */
byte ran[K + 1];               /* times each id was taken (ghost) */

inline take(t) {
  assert(t != 0 && ran[t] == 0);   /* never run twice */
  ran[t]++;
  pending--;
  t = 0
}

/* wake_one(); pp: the caller is this thread, in its parked poll. Uses local j. */
inline wake_one(pp) {
  /* fence */
  if
  :: sleeping_ == 0 -> skip               /* seq_cst load */
  :: else ->
     if
     :: waking_ != 0 -> skip              /* seq_cst load: a woken thread will look */
     :: else ->
        if
        :: pp -> skip                     /* it leaves its ring next and takes the task */
        :: else ->
           atomic {                       /* idle_mutex_ */
             if
             :: waking_ != 0 -> skip
             :: else ->
                j = 255;
                if
                :: sleeper[0] -> j = 0
#if N > 1
                :: sleeper[1] -> j = 1
#endif
#if N > 2
                :: sleeper[2] -> j = 2
#endif
                :: else -> skip
                fi;
                if
                :: j != 255 ->
                   sleeper[j] = false;
                   sleeping_--;
                   waking_++;
                   wbit[j] = true         /* reactor->wake(), under the lock */
                :: else -> skip
                fi;
                j = 0
             fi
           }
        fi
     fi
  fi
}

active [N] proctype thread() {
  byte me = _pid;
  byte t, j;
  /* thread-local */
  bool woken;     /* woken by wake_one: counted in waking_ until it looks at the queue */
  byte io;        /* id of the I/O outstanding on this thread's ring, 0: none */

  atomic { !gil -> gil = true };        /* take_lock */
top:
  atomic {                              /* looking at the queue now */
    if
    :: woken -> woken = false; waking_--
    :: else -> skip
    fi
  };
  atomic {                              /* pop() */
    if
    :: len(ready) > 0 -> ready?t; take(t); goto running
    :: else -> skip
    fi
  };
  atomic {                              /* poll(block=false), then pop() again */
    if
    :: wbit[me] -> wbit[me] = false     /* a stale wake-up reaped here */
    :: true -> skip
    fi;
    if
    :: io != 0 -> ready!io; io = 0; pending++; goto polled_io
    :: true -> skip
    fi;
    if
    :: len(ready) > 0 -> ready?t; take(t); goto running
    :: else -> skip
    fi
  };
  atomic { gil = false };               /* drop_lock */
park:
#ifdef BUG_CHECK_BEFORE_REGISTER
  atomic {                              /* looks first ... */
    if
    :: len(ready) > 0 -> atomic { !gil -> gil = true }; goto top
    :: else -> skip
    fi
  };
  atomic { sleeper[me] = true; sleeping_++ };   /* ... registers after */
#else
  atomic { sleeper[me] = true; sleeping_++ };   /* idle_mutex_: register */
  /* fence */
#ifndef BUG_NO_RECHECK
  atomic {                              /* ready_size_ (seq_cst) */
    if
    :: len(ready) > 0 -> goto relock
    :: else -> skip
    fi
  };
#endif
#endif
end_blocked:                            /* parked_poll = true; poll(block=true) */
  if
  :: atomic { wbit[me] -> wbit[me] = false }
  :: atomic { io != 0 -> ready!io; io = 0; pending++ };
     wake_one(true)
  :: atomic { idle_wakes < W -> idle_wakes++ }   /* the watch period ended */
  fi;
  atomic {                              /* idle_mutex_ */
    if
    :: sleeper[me] -> sleeper[me] = false; sleeping_--;
       if
       :: len(ready) == 0 -> goto park  /* the watcher: parks again, without the lock */
       :: true -> skip                  /* (or not the watcher) */
       fi
    :: else -> woken = true             /* wake_one counted us in waking_ */
    fi
  };
  atomic { !gil -> gil = true };        /* take_lock */
  goto top;
relock:
  atomic {                              /* idle_mutex_ */
    if
    :: sleeper[me] -> sleeper[me] = false; sleeping_--
    :: else -> woken = true             /* wake_one counted us in waking_ */
    fi
  };
  atomic { !gil -> gil = true };        /* take_lock */
  goto top;

polled_io:
  wake_one(false);
  goto top;

running:                                /* the task, holding the lock */
  if
  :: atomic { nexttid <= K -> ready!nexttid; nexttid++; pending++ };   /* schedule() */
     wake_one(false);
     goto running
  :: goto top                           /* ends */
  :: atomic { nexttid <= K && io == 0 -> io = nexttid; nexttid++ };   /* waits for I/O */
     goto top
  :: atomic { gil = false };            /* a check point: drop the lock, take it again */
     atomic { !gil -> gil = true };
     goto top
  :: atomic { io != 0 -> ready!io; io = 0; pending++ };   /* a check point polls its ring */
     wake_one(false);
     if
     :: atomic { gil = false };         /* the hand-over */
        atomic { !gil -> gil = true }
     :: skip                            /* or keeps running */
     fi;
     goto running
  :: atomic { gil = false };            /* weft::blocking(fn): blocking_release */
#ifdef FIX_BLOCKING_WAKE
     if
     :: len(ready) > 0 -> wake_one(false)
     :: else -> skip
     fi;
#endif
     if
     :: skip                            /* fn returns */
#ifndef FN_RETURNS
     :: skip;                           /* fn waits for what a queued task does */
end_fn:
        (pending == 0)
#endif
     fi;
     atomic { !gil -> gil = true };     /* blocking_reacquire */
     goto top
  fi
}

/* a thread outside the executor: schedule() -> push + wake_one */
active proctype producer() {
  byte j;
  do
  :: atomic { nexttid <= K -> ready!nexttid; nexttid++; pending++ };
     wake_one(false)
  :: else -> break
  od
}

/* A new holder recruits a watcher: writes a sleeper's eventfd, leaving it on the list. */
active proctype recruiter() {
end_recruit:
  do
  :: atomic { idle_wakes < W && sleeper[0] && !wbit[0] -> wbit[0] = true; idle_wakes++ }
#if N > 1
  :: atomic { idle_wakes < W && sleeper[1] && !wbit[1] -> wbit[1] = true; idle_wakes++ }
#endif
#if N > 2
  :: atomic { idle_wakes < W && sleeper[2] && !wbit[2] -> wbit[2] = true; idle_wakes++ }
#endif
  :: idle_wakes >= W -> break
  od
}

/* When nothing can move any more, no task is queued while a thread sleeps in its ring. */
active proctype lost_wakeup() {
  timeout -> assert(pending == 0 || sleeping_ == 0)
}

ltl live { [] ((pending > 0) -> <> (pending == 0)) }
