/** Every chaos scenario, in the order they run. */
import type { Scenario } from './harness.js';
import { killDuringPoll } from './kill-during-poll.js';
import { redisOutage } from './redis-outage.js';
import { upstreamStorm } from './upstream-storm.js';

export const SCENARIOS: Scenario[] = [redisOutage, upstreamStorm, killDuringPoll];
