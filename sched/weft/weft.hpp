// weft: the umbrella header. Includes the whole public API.
#pragma once

#include <weft/blocking.hpp>
#include <weft/cancel.hpp>
#include <weft/check.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/generator.hpp>
#include <weft/io/address.hpp>
#include <weft/io/fd.hpp>
#include <weft/io/file.hpp>
#include <weft/io/operation.hpp>
#include <weft/io/pipe.hpp>
#include <weft/io/reactor.hpp>
#include <weft/io/result.hpp>
#include <weft/io/ring.hpp>
#include <weft/io/signal.hpp>
#include <weft/io/socket.hpp>
#include <weft/sched/cooperative.hpp>
#include <weft/sched/run.hpp>
#include <weft/spawn.hpp>
#include <weft/task.hpp>
#include <weft/task_group.hpp>
#include <weft/time.hpp>
#include <weft/when.hpp>
