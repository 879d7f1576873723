// IIS native-module ABI: everything the ancm-rs glue uses, in one include.
//
// Clean-room declarations written from public facts (see each file); no Microsoft header text
// copied. No overloaded virtual methods anywhere: MSVC groups overloads in reverse declaration
// order while g++ keeps declaration order, so each Microsoft overload has its own name at its
// MSVC slot. iis-glue/tests/vtable_slots.cpp checks every declared slot.
#pragma once

#include "types.h"
#include "events.h"
#include "module.h"
#include "server.h"
#include "context.h"
#include "request.h"
#include "response.h"
#include "websocket.h"
#include "ahadmin.h"
