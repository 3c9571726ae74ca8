using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Higher.Reference;

namespace Higher;

/// <summary>
/// Maps devices to the backends that serve them. The CPU is served by <see cref="ReferenceBackend"/>;
/// other backends (CUDA) register themselves here once created. When <see cref="CheckKernelCalls"/>
/// is on, every backend handed out runs under a <see cref="CheckedBackend"/>.
/// </summary>
public static class Backends
{
    /// <summary>The runtime switch (runtimeconfig or AppContext) that turns <see cref="CheckKernelCalls"/> on in a Release build.</summary>
    public const string CheckKernelCallsSwitch = "Higher.CheckKernelCalls";

    private static readonly ConcurrentDictionary<Device, IBackend> Registered = new();
    private static readonly ConditionalWeakTable<IBackend, CheckedBackend> CheckedWrappers = new();

    /// <summary>
    /// Whether <see cref="For"/> hands out backends wrapped in a <see cref="CheckedBackend"/>, which
    /// validates every kernel call's operands (and reads index tensors back to check their bounds).
    /// On in Debug builds and wherever the <see cref="CheckKernelCallsSwitch"/> switch is set (the
    /// test projects set it); off otherwise, since the engine validates what users pass before any
    /// kernel runs. Tensors keep the backend they were created with.
    /// </summary>
    public static bool CheckKernelCalls { get; set; } = DefaultChecking();

    private static bool DefaultChecking()
    {
#if DEBUG
        return true;
#else
        return AppContext.TryGetSwitch(CheckKernelCallsSwitch, out bool on) && on;
#endif
    }

    private static IBackend Served(IBackend backend) =>
        CheckKernelCalls && backend is not CheckedBackend ? CheckedWrappers.GetValue(backend, static b => new CheckedBackend(b)) : backend;

    /// <summary>Makes <paramref name="backend"/> the backend of its device (replacing any earlier one).</summary>
    public static void Register(IBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        Registered[backend.Device] = backend;
    }

    /// <summary>Removes the backend registered for <paramref name="device"/>, if any.</summary>
    public static void Unregister(Device device) => Registered.TryRemove(device, out _);

    /// <summary>The backend serving <paramref name="device"/>; throws naming the device when none is registered.</summary>
    public static IBackend For(Device device)
    {
        if (device.Type == DeviceType.Cpu)
        {
            return Served(Registered.TryGetValue(device, out var cpu) ? cpu : ReferenceBackend.Instance);
        }
        if (Registered.TryGetValue(device, out var b))
        {
            return Served(b);
        }
        throw new InvalidOperationException(
            $"No backend is registered for device {device}. Create one (e.g. CudaBackend.TryCreate) and call Backends.Register(backend).");
    }
}
