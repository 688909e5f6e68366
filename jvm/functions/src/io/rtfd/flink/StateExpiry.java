package io.rtfd.flink;

import java.time.Duration;

import org.apache.flink.api.common.state.StateTtlConfig;

/** The expiry of the job's keyed state: gone {@code days} after its last write, never read once expired. */
final class StateExpiry {
    private StateExpiry() {
    }

    static StateTtlConfig afterDaysWithoutWrite(int days) {
        return StateTtlConfig.newBuilder(Duration.ofDays(days))
                .setUpdateType(StateTtlConfig.UpdateType.OnCreateAndWrite)
                .setStateVisibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                .build();
    }
}
